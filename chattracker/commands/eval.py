"""`chattracker eval`: one-pass evaluation of a tracker over a benchmark, resumable."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
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
    parser.add_argument("--enhance", action="store_true",
                        help="wrap the registered --tracker with ChatTracker and the shipped fusion settings (the "
                             "spec NAME+chattracker, which --tracker also takes; a YAML config says enhance: true)")
    parser.add_argument("--sequences", nargs="+", help="only these sequences")
    parser.add_argument("--split", choices=("test", "all"), help="LaSOT/TNL2K: test list (default) or all")
    parser.add_argument("--descriptions", metavar="PACK",
                        help="a description pack folder (`chattracker describe --dataset`): its descriptions are used "
                             "instead of running RPO (needs a ChatTracker YAML config)")
    parser.add_argument("--init", default="box", choices=INIT_MODES,
                        help="what frame 1 is given: box (ground truth, default), box+language, language (sentence only)")
    parser.add_argument("--sentences", metavar="YAML",
                        help="sequence -> sentence mapping that replaces (or supplies) the dataset's sentences")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: processes on this machine (default); ray: actors on a Ray cluster")
    parser.add_argument("--workers", type=int,
                        help="parallel workers, each with its tracker built once (local default 1; ray default: as "
                             "many as the cluster fits)")
    parser.add_argument("--devices", metavar="LIST",
                        help="local: devices given to the workers round-robin, e.g. cuda:0,cuda:1 (a describer or "
                             "grounder with device: auto uses its worker's)")
    parser.add_argument("--address", help="ray: cluster address (default: RAY_ADDRESS, else a new local Ray)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                        help="ray: GPUs per actor (num_gpus; fractions share a GPU; default 0)")
    parser.add_argument("--threads-per-worker", type=int, metavar="T",
                        help="CPU threads each worker's models use (ray: the actor's num_cpus); default: local "
                             "workers share the cores, one local worker takes them all, a Ray actor takes 1")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a sequence whose worker died is tried again before it is reported failed "
                             "(default 2)")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only shard I of N (1-based, round-robin over the sequence list) into a results "
                             "folder shared with the other shards, e.g. --shard $SLURM_ARRAY_TASK_ID/8")
    parser.add_argument("--results", help="output folder (default results/<dataset>/<tracker>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker.builder import build_tracker_from_spec
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.runner import run_benchmark

    if args.enhance:
        from chattracker.builder import enhanced_spec, is_config_path

        if is_config_path(args.tracker):
            raise InputError(f"--enhance wraps a registered tracker name; {args.tracker} is a config (give it "
                             f"enhance: true instead)")
        args.tracker = enhanced_spec(args.tracker)
    plan = workers_from_args(args)
    if plan.backend == "ray":
        resolve_for_actors(args)
    shard = None
    if args.shard is not None:
        from chattracker_eval.shards import parse_shard

        shard = parse_shard(args.shard)
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
    elif plan.backend == "local":
        build_tracker_from_spec(args.tracker)  # a bad name or config fails here, once, not per sequence
    else:
        check_tracker_spec(args.tracker)  # models load on the actors, not in the driver
    results = Path(args.results) if args.results else Path("results") / args.dataset / Path(args.tracker).stem
    manifest = {"dataset": args.dataset, "root": str(args.root), "tracker": args.tracker,
                "sequences": sequences.names(), "descriptions": args.descriptions, "init": args.init,
                "sentences": args.sentences, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "backend": {"name": plan.backend, "workers": plan.workers, "devices": plan.devices,
                            "address": plan.address, "gpus_per_worker": plan.gpus_per_worker,
                            "threads_per_worker": plan.threads, "shard": args.shard}}
    outcomes = run_benchmark(sequences, args.tracker, results, plan, not args.no_progress, manifest,
                             descriptions=descriptions, shard=shard)
    done = [o for o in outcomes if o.status == "done"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    frames = sum(o.frames for o in done)
    seconds = sum(o.seconds for o in done)
    where = f" (shard {shard[0]}/{shard[1]}: {len(outcomes)} of them)" if shard else ""
    print(f"{args.dataset} (--init {args.init}): {len(sequences)} sequence(s){where}, ran {len(done)} ({frames} frames, "
          f"{frames / seconds if seconds else 0:.1f} fps incl. image reading), skipped {len(skipped)} already done, "
          f"failed {len(failed)} -> {results}/")
    for outcome in outcomes:
        for warning in outcome.warnings:
            print(f"warning {outcome.name}: {warning}")
    for outcome in failed:
        print(f"failed {outcome.name}: {outcome.error}")
    return 1 if failed else 0


def resolve_for_actors(args: argparse.Namespace) -> None:
    """Ray actors run in other folders (and on other nodes): relative paths are made absolute here, in the
    driver, before they travel (``--root ../data`` would otherwise name nothing on the actors)."""
    args.root = os.path.abspath(args.root)
    if args.descriptions:
        args.descriptions = os.path.abspath(args.descriptions)
    if Path(args.tracker).is_file():  # a YAML config; a registered name stays a name
        args.tracker = os.path.abspath(args.tracker)


def workers_from_args(args: argparse.Namespace):
    """The ``Workers`` plan of the command line; options of the other backend are refused, not ignored."""
    from chattracker_eval.runner import Workers

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.retries < 0:
        raise InputError("--retries must be at least 0")
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise InputError("--threads-per-worker must be at least 1")
    if args.backend == "local":
        for flag, value in (("--address", args.address), ("--gpus-per-worker", args.gpus_per_worker or None)):
            if value is not None:
                raise InputError(f"{flag} is for --backend ray")
        devices = None
        if args.devices is not None:
            from chattracker.devices import parse_devices

            devices = parse_devices(args.devices)
        return Workers("local", args.workers or 1, devices, retries=args.retries, threads=args.threads_per_worker)
    if args.devices is not None:
        raise InputError("--devices is for --backend local; on Ray use --gpus-per-worker (Ray assigns the GPUs)")
    if args.gpus_per_worker < 0:
        raise InputError("--gpus-per-worker must be >= 0")
    return Workers("ray", args.workers, None, args.address, args.gpus_per_worker, args.retries,
                   threads=args.threads_per_worker)


def check_tracker_spec(spec: str) -> None:
    """A bad tracker name or config fails once in the driver, without building models there."""
    from chattracker.config import load_tracker_config
    from chattracker_trackers.base import available_trackers

    from chattracker.builder import base_name_of

    name = base_name_of(spec)
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        config = load_tracker_config(spec)
        name = config.tracker
        if config.enhance:
            from chattracker.wrapper import FusionConfig

            FusionConfig.from_dict(config.chattracker)
    if name not in available_trackers():
        raise InputError(f"unknown tracker {name!r}; available: {', '.join(available_trackers())}")
