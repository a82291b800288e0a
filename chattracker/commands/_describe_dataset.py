"""`chattracker describe --dataset NAME --root PATH --out DIR`: RPO for every sequence of a benchmark.

Frame 1 and its box (and the dataset's sentence as the start when there is one) for each sequence; all sequences
advance round by round in their own threads, and a round's chat calls leave as one batch (``RoundBatcher``), so on
the offload engine each expert read serves every sequence of a group. One pack per sequence (``chattracker.packs``),
written as the sequence finishes; a rerun skips sequences whose pack exists (resume after a kill).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chattracker.errors import ChatTrackerError, InputError
from chattracker.packs import build_pack, read_pack, write_pack
from chattracker.results import write_json
from chattracker.video import read_image

logger = logging.getLogger(__name__)


class _SerialGrounder:
    """The grounder behind a lock (runs share it across threads); same identity as the grounder itself."""

    def __init__(self, grounder: Any) -> None:
        from chattracker.rpo import component_identity

        self.grounder, self.lock = grounder, threading.Lock()
        self.name = getattr(grounder, "name", None)
        self.identity = component_identity(grounder)

    def ground(self, image, phrases):
        with self.lock:
            return self.grounder.ground(image, phrases)


def _remove_stale_temporaries(out: Path) -> None:
    for path in list(out.glob(".*.tmp")) + list(out.glob("*/.*.tmp")) + list(out.glob("language/*/.*.tmp")):
        path.unlink(missing_ok=True)


# What a pack folder holds (packs.py): the per-sequence JSON, the text forms VL trackers read, the run record.
PACK_ENTRIES = ("init_nlp", "language", "describe.json")


def refuse_foreign_folder(out: Path) -> None:
    """A non-empty --out that is no pack folder is someone else's: packs are never written into it (an
    interrupted pack folder is resumed)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if not out.is_dir():
        return
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    ours = [p for p in entries if p.name in PACK_ENTRIES or p.suffix == ".json"]
    if entries and not ours:
        raise InputError(f"--out {out} is not empty and is no description pack folder (no describe.json, init_nlp/ "
                         "or <sequence>.json); choose an empty or new folder")


def run_dataset(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from chattracker.commands.describe import build_components
    from chattracker.mllm.batch import RoundBatcher, can_batch
    from chattracker.rpo import build_describer_for, run_rpo
    from chattracker_eval.datasets import load_dataset

    if args.image:
        raise InputError("give either an image or --dataset, not both")
    if not args.root or not args.out:
        raise InputError("--dataset needs --root (the dataset folder) and --out (the pack folder)")
    options = {"split": args.split} if args.split and args.dataset in ("lasot", "lasot_ext", "tnl2k") else {}
    sequences = load_dataset(args.dataset, args.root, **options).sequences.select(args.sequences)
    for sequence in sequences:
        sequence.frames  # an annotation-only layout fails here, once, before any model is loaded
    out = Path(args.out)
    refuse_foreign_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)
    except OSError as error:
        raise InputError(f"cannot use {out} as the pack folder: {error.strerror or error}") from None
    done = [s.name for s in sequences if read_pack(out, s.name) is not None]
    todo = [s for s in sequences if s.name not in set(done)]
    describer, grounder, config = build_components(settings, args.describer, args.grounder, args.config)
    grounder = _SerialGrounder(grounder)
    fallback = None if args.no_fallback else build_describer_for("attributes", grounder)
    width = len(todo) if not args.parallel else args.parallel
    failed: dict[str, str] = {}
    batches: list[int] = []
    bar = tqdm(total=len(todo), unit="seq", desc=f"describe {args.dataset}", disable=args.no_progress)
    for first in range(0, len(todo), max(width, 1)):
        chunk = todo[first:first + width]
        batcher = RoundBatcher(describer, len(chunk)) if can_batch(describer) else None
        lock = threading.Lock()  # describers that cannot batch are asked one call at a time

        def work(sequence) -> None:
            try:
                frame_path = sequence.frames[0]
                image = read_image(frame_path)
                view = batcher.view() if batcher else describer
                if batcher:
                    result = run_rpo(image, sequence.init_box, view, grounder, config, sequence.language or None,
                                     fallback=fallback)
                else:
                    with lock:
                        result = run_rpo(image, sequence.init_box, view, grounder, config, sequence.language or None,
                                         fallback=fallback)
                write_pack(out, build_pack(sequence.name, args.dataset, str(frame_path), result.to_json()))
            except Exception as error:  # one sequence must not stop the benchmark
                logger.warning("describe %s failed: %s", sequence.name, error)
                failed[sequence.name] = f"{type(error).__name__}: {error}"
            finally:
                if batcher:
                    batcher.finished()
                bar.update(1)

        threads = [threading.Thread(target=work, args=(s,), name=f"rpo-{s.name}") for s in chunk]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if batcher:
            batches += batcher.batches
    bar.close()
    from chattracker.rpo import component_identity

    write_json(out / "describe.json", {
        "dataset": args.dataset, "root": str(args.root), "sequences": sequences.names(),
        "describer": component_identity(describer), "grounder": grounder.identity,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(), "batches": batches})
    print(f"{args.dataset}: {len(sequences)} sequence(s), described {len(todo) - len(failed)}, skipped {len(done)} "
          f"already described, failed {len(failed)} -> {out}/ (chat batches: {batches or 'none'})")
    for name, error in failed.items():
        print(f"failed {name}: {error}")
    if failed:
        raise ChatTrackerError(f"{len(failed)} sequence(s) not described; rerun to retry them")
    return 0
