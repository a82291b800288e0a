"""Sequences as tasks over Ray actors, each actor holding one built tracker (models loaded once per actor).

The driver (the ``chattracker eval`` process) only schedules: one sequence in flight per actor; boxes and
times come back to it and it writes the files. An actor that dies (process killed, node lost) is replaced
and its sequence comes back lost for the runner to retry elsewhere. Frames are read by the actors from the
paths the driver lists, so every node needs the dataset at the same path (a shared file system) and the
same ``chattracker`` install. Ray is an optional extra: ``pip install chattracker[ray]``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from chattracker.errors import InputError
from chattracker_eval.backends import Completion
from chattracker_eval.ray_connect import connect, forwarded_env
from chattracker_eval.worker import RunJob, SequenceResult, SequenceWorker

logger = logging.getLogger(__name__)

# Settings that must reach the actors: weights, cache and offline switches of the driver's environment.
FORWARDED_PREFIXES = ("CHATTRACKER_", "HF_", "TRANSFORMERS_")


class SequenceActor:
    """The Ray actor body: a :class:`SequenceWorker` on the GPU(s) Ray gave this actor, if any, with as many
    threads for OpenCV, onnxruntime and torch as the CPUs Ray gave it (``num_cpus``, one by default)."""

    def __init__(self, reuse: bool, threads: int = 1) -> None:
        import ray

        # Ray sets CUDA_VISIBLE_DEVICES to the actor's own GPUs, so the first visible one is ours.
        device = "cuda:0" if ray.get_gpu_ids() else "cpu"
        node = ray.get_runtime_context().get_node_id()[:8]
        self.worker = SequenceWorker(device, reuse, label=f"ray actor pid {os.getpid()} on node {node}",
                                     threads=threads)

    def run(self, job: RunJob) -> SequenceResult:
        return self.worker.run(job)

    def pid(self) -> int:
        return os.getpid()


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A ``host:port`` that does not answer is one clear error now: ``ray.init`` would retry for many minutes."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r} is not host:port (e.g. 10.0.0.5:6379), 'auto' or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise InputError(f"no Ray cluster answers at {address} ({error.strerror or error}); start one with "
                         "`ray start --head` or pass its address") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'chattracker[ray]'") from None
    return ray


class RayBackend:
    """``workers`` actors with ``gpus_per_worker`` GPUs each on the cluster at ``address`` (None: the one in
    ``RAY_ADDRESS``, else a new local Ray)."""

    def __init__(self, address: str | None, workers: int | None, gpus_per_worker: float = 0.0,
                 reuse: bool = True, threads: int | None = None) -> None:
        ray = self.ray = _import_ray()
        check_reachable(address)
        connect(ray, address, forwarded_env(FORWARDED_PREFIXES))
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if gpus_per_worker > gpus:
            ray.shutdown()
            raise InputError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
        self.threads = threads or 1
        if self.threads > cpus:
            ray.shutdown()
            raise InputError(f"--threads-per-worker {self.threads}: the Ray cluster has {cpus:g} CPU(s)")
        fits = int(min(gpus // gpus_per_worker, cpus // self.threads) if gpus_per_worker else cpus // self.threads)
        self.slots = max(1, workers if workers else fits)
        if self.slots > fits:
            logger.warning("--workers %d: the cluster fits %d actor(s) now; the rest wait for resources",
                           self.slots, fits)
        self._actor_class = ray.remote(num_cpus=self.threads, num_gpus=gpus_per_worker, max_restarts=0)(SequenceActor)
        self.reuse = reuse
        self._idle = [self._new_actor() for _ in range(self.slots)]
        self._inflight: dict[Any, tuple[RunJob, Any]] = {}

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.reuse, self.threads)

    def submit(self, job: RunJob) -> None:
        actor = self._idle.pop()
        self._inflight[actor.run.remote(job)] = (job, actor)

    def wait(self, timeout: float) -> list[Completion]:
        if not self._inflight:
            return []
        ready, _ = self.ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            job, actor = self._inflight.pop(ref)
            try:
                done.append(Completion(job, self.ray.get(ref)))
                self._idle.append(actor)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                    self.ray.exceptions.NodeDiedError, self.ray.exceptions.ObjectLostError) as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                done.append(Completion(job, lost=f"Ray worker lost: {type(error).__name__}: {reason}"))
                self.ray.kill(actor, no_restart=True)
                self._idle.append(self._new_actor())
        return done

    def close(self) -> None:
        for actor in [*self._idle, *(actor for _, actor in self._inflight.values())]:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.ray.shutdown()
