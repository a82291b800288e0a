"""`chattracker eval`: one-pass evaluation of a tracker over a benchmark, resumable."""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path

from chattracker.errors import InputError

logger = logging.getLogger(__name__)

from chattracker_eval.runner import INIT_MODES

DATASET_HELP = "lasot, lasot_ext, tnl2k, otb, otb99_lang, vot, folder, got10k, trackingnet, uav123, uav123_10fps, uav20l"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="run a tracker over a benchmark (one-pass evaluation, resumable)",
        description="Initialise on frame 1 with the ground-truth box (--init box, the default), the box and the "
                    "sequence's sentence (box+language), or the sentence alone (language: frame 1 is predicted by "
                    "grounding the sentence, and scored as predicted), track the rest, and write <seq>.txt (x,y,w,h per frame) and <seq>_time.txt atomically into --results. "
                    "Sequences already done are skipped; a failing sequence is reported at the end (exit 1).")
    parser.add_argument("--dataset", required=True, help=DATASET_HELP)
    parser.add_argument("--root", required=True, help="dataset root (with images)")
    parser.add_argument("--tracker", required=True, help="registered tracker name or a YAML config")
    parser.add_argument("--sequences", nargs="+", help="only these sequences")
    parser.add_argument("--split", choices=("test", "all"), help="LaSOT/TNL2K: test list (default) or all")
    parser.add_argument("--descriptions", metavar="PACK",
                        help="a description pack folder (`chattracker describe --dataset`): its descriptions are used "
                             "instead of running RPO (needs a ChatTracker YAML config)")
    parser.add_argument("--init", default="box", choices=INIT_MODES,
                        help="what frame 1 is given: box (ground truth, default), box+language, language (sentence only)")
    parser.add_argument("--sentences", metavar="YAML",
                        help="sequence -> sentence mapping that replaces (or supplies) the dataset's sentences")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--results", help="output folder (default results/<dataset>/<tracker>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker.builder import build_tracker_from_spec
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.runner import run_benchmark

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    options = {"split": args.split} if args.split and args.dataset in ("lasot", "lasot_ext", "tnl2k") else {}
    benchmark = load_dataset(args.dataset, args.root, **options)
    sequences = benchmark.sequences.select(list(dict.fromkeys(args.sequences)) if args.sequences else None)
    if args.sentences:
        from chattracker_eval.sentences import with_sentences

        sequences = with_sentences(sequences, args.sentences, benchmark.sequences.names())
    if args.init != "box":
        silent = [s.name for s in sequences if not s.language.strip()]
        if silent:
            raise InputError(f"--init {args.init} needs a sentence for every sequence; none for "
                             f"{', '.join(silent[:5])}{' ...' if len(silent) > 5 else ''} (give them with --sentences)")
    descriptions = None
    if args.descriptions:
        from chattracker.packs import build_described_tracker, descriptions_for

        descriptions = descriptions_for(args.descriptions, sequences.names())
        build_described_tracker(args.tracker, *next(iter(descriptions.values()), ("", "")))  # a bad config fails once
    else:
        build_tracker_from_spec(args.tracker)  # a bad name or config fails here, once, not per sequence
    results = Path(args.results) if args.results else Path("results") / args.dataset / Path(args.tracker).stem
    manifest = {"dataset": args.dataset, "root": str(args.root), "tracker": args.tracker,
                "sequences": sequences.names(), "descriptions": args.descriptions, "init": args.init,
                "sentences": args.sentences, "started": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    outcomes = run_benchmark(sequences, args.tracker, results, args.workers, not args.no_progress, manifest,
                             descriptions=descriptions)
    done = [o for o in outcomes if o.status == "done"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    frames = sum(o.frames for o in done)
    seconds = sum(o.seconds for o in done)
    print(f"{args.dataset} (--init {args.init}): {len(sequences)} sequence(s), ran {len(done)} ({frames} frames, "
          f"{frames / seconds if seconds else 0:.1f} fps incl. image reading), skipped {len(skipped)} already done, "
          f"failed {len(failed)} -> {results}/")
    for outcome in outcomes:
        for warning in outcome.warnings:
            print(f"warning {outcome.name}: {warning}")
    for outcome in failed:
        print(f"failed {outcome.name}: {outcome.error}")
    return 1 if failed else 0

