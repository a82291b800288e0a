"""Where sequences run: in this process, or on a local pool of worker processes. Each backend keeps one
built tracker per worker (``eval.worker``) and hands finished sequences back to the runner, which alone
writes result files. A worker that dies is reported as lost, so the runner can retry its sequence.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from chattracker.devices import device_for_worker
from chattracker_eval.worker import RunJob, SequenceResult, SequenceWorker

PARENT_POLL_S = 1.0


@dataclass
class Completion:
    """A job that came back: its result, or why its worker was lost (``lost``) with no result."""

    job: RunJob
    result: SequenceResult | None = None
    lost: str = ""


class Backend(Protocol):
    slots: int

    def submit(self, job: RunJob) -> None: ...

    def wait(self, timeout: float) -> list[Completion]: ...

    def close(self) -> None: ...


class InlineBackend:
    """One worker in this process (``--workers 1``): the simplest path, and the one a debugger can follow."""

    def __init__(self, device: str | None = None, reuse: bool = True, threads: int | None = None) -> None:
        self.slots = 1
        self.worker = SequenceWorker(device, reuse, label=f"this process ({os.getpid()})", threads=threads)
        self._queue: list[RunJob] = []

    def submit(self, job: RunJob) -> None:
        self._queue.append(job)

    def wait(self, timeout: float) -> list[Completion]:
        done = [Completion(job, self.worker.run(job)) for job in self._queue]
        self._queue = []
        return done

    def close(self) -> None:
        self.worker.restore_threads()


_WORKER: SequenceWorker | None = None


def _start_worker(parent: int, workers: int, devices: list[str] | None, counter, reuse: bool,
                  threads: int | None) -> None:
    """Pool initializer: take the next device round-robin and ``threads`` (default: a share of the cores), and
    exit when the main process is gone."""
    global _WORKER
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    _WORKER = SequenceWorker(device_for_worker(devices, index), reuse, label=f"worker {index} (pid {os.getpid()})",
                             threads=threads)

    def watch() -> None:  # a worker whose main process died (even by SIGKILL) exits instead of idling forever
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_job(job: RunJob) -> SequenceResult:
    assert _WORKER is not None, "pool worker started without its initializer"
    return _WORKER.run(job)


class PoolBackend:
    """``workers`` local processes, each with its own built tracker (and device, round-robin). A crashed
    worker breaks a ``ProcessPoolExecutor``: its in-flight jobs come back lost and a fresh pool is started."""

    def __init__(self, workers: int, devices: list[str] | None = None, reuse: bool = True,
                 threads: int | None = None) -> None:
        self.slots = workers
        self.devices = devices
        self.reuse = reuse
        self.threads = threads
        # spawn: trackers hold native thread pools (OpenCV, onnxruntime) that do not survive fork.
        self._context = multiprocessing.get_context("spawn")
        self._counter = self._context.Value("i", 0)
        self._pool = self._new_pool()
        self._futures: dict[Future, RunJob] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.slots, mp_context=self._context, initializer=_start_worker,
                                   initargs=(os.getpid(), self.slots, self.devices, self._counter, self.reuse,
                                             self.threads))

    def submit(self, job: RunJob) -> None:
        self._futures[self._pool.submit(_run_job, job)] = job

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            return []
        finished, _ = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
        done, broken = [], False
        for future in finished:
            job = self._futures.pop(future)
            try:
                done.append(Completion(job, future.result()))
            except BrokenProcessPool as error:
                broken = True
                done.append(Completion(job, lost=f"worker process failed: {type(error).__name__}: {error}"))
            except Exception as error:  # e.g. a result that cannot be pickled back
                done.append(Completion(job, lost=f"worker process failed: {type(error).__name__}: {error}"))
        if broken:
            # Every job of a broken pool fails; collect them all and go on with a new pool.
            for future, job in list(self._futures.items()):
                done.append(Completion(job, lost="worker process failed: its pool broke when another worker died"))
            self._futures.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
