"""`chattracker pack`: write (or check) a GOT-10k / TrackingNet evaluation-server submission zip."""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

from chattracker.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack", help="write and check a GOT-10k or TrackingNet submission zip from result folders",
        description="Packs <seq>.txt result files (as `chattracker eval` writes them) into the server's layout: "
                    "GOT-10k <seq>/<seq>_001.txt (+ _002, _003: one --results per run of a stochastic tracker) "
                    "and <seq>/<seq>_time.txt; TrackingNet <seq>.txt. Checks file names, one row per frame and "
                    "comma-separated finite boxes for every sequence of the split before the zip is written. "
                    "With --check, only checks an existing zip.")
    parser.add_argument("--format", required=True, choices=("got10k", "trackingnet"))
    parser.add_argument("--root", required=True, help="dataset split the submission is for (e.g. GOT-10k/test, "
                                                      "TrackingNet/TEST): names and frame counts come from it")
    parser.add_argument("--results", action="append", help="folder of <seq>.txt files (repeat for runs 2 and 3)")
    parser.add_argument("--out", help="zip to write (default <format>_submission.zip)")
    parser.add_argument("--check", metavar="ZIP", help="check this zip instead of writing one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.submission import check_submission, write_submission

    benchmark = load_dataset(args.format, args.root)
    if args.check:
        if args.results or args.out:
            raise InputError("--check reads a zip; it takes no --results or --out")
        problems = check_submission(args.check, args.format, benchmark)
        for problem in problems:
            print(problem)
        if problems:
            raise InputError(f"{args.check}: {len(problems)} problem(s); the server would reject it")
        print(f"{args.check}: {args.format} submission for {len(benchmark)} sequence(s) passes the format checks")
        return 0
    if not args.results:
        raise InputError("give --results (the folder `chattracker eval` wrote), or --check ZIP")
    out = Path(args.out or f"{args.format}_submission.zip")
    refuse_input_as_output(out, [Path(args.root), *map(Path, args.results)])
    packed = write_submission(out, args.format, benchmark, [Path(r) for r in args.results])
    print(f"wrote {packed.path}: {packed.sequences} sequence(s), {packed.runs} run(s), {packed.files} file(s); "
          "format checks passed")
    return 0


def refuse_input_as_output(out: Path, inputs: list[Path]) -> None:
    """The zip replaces ``out`` whole: if ``out`` is a file or folder it reads (a result file, the dataset),
    an input would be lost with exit 0, so it is refused before anything is read. An earlier zip there may
    be replaced (it is no input)."""
    target = Path(os.path.realpath(out))
    earlier_zip = target.is_file() and zipfile.is_zipfile(target)
    for folder in inputs:
        folder = Path(os.path.realpath(folder))
        if target == folder or (target.exists() and not earlier_zip and folder in target.parents):
            raise InputError(f"--out {out} is one of the inputs (inside {folder}); choose a path outside "
                             "--results and --root")
