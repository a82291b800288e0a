"""`chattracker report`: compare result sets in a markdown/CSV table and toolkit-style plots."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from chattracker.errors import InputError
from chattracker.outputs import staged_into
from chattracker.commands.score import BENCHMARKS, require_scored
from chattracker_eval.protocols import PROTOCOL_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="table and plots comparing several result folders on one benchmark",
        description="Writes report.md, report.csv, success.png, precision.png, norm_precision.png, the per-sequence "
                    "table sequences.md / sequences.csv (AUC, P, P_norm per sequence and tracker) and, when the "
                    "benchmark has attributes (LaSOT, TNL2K, OTB ...), attributes/<ATTR>_<plot>.png into --out. Every "
                    "table and plot names the protocol and the number of sequences. Files are written beside --out "
                    "first and moved in at the end: a failure leaves --out as it was.")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    parser.add_argument("--annotations", required=True, help="dataset root or official toolkit annotation folder")
    parser.add_argument("--results", required=True, action="append", help="folder of <seq>.txt files (repeatable)")
    parser.add_argument("--names", nargs="+", help="display names, one per --results (default: folder names)")
    parser.add_argument("--protocol", default="official", choices=PROTOCOL_NAMES)
    parser.add_argument("--split", choices=("test", "all"), help="LaSOT/TNL2K: test list (default) or all")
    parser.add_argument("--out", default="report", help="output folder (default ./report)")
    parser.add_argument("--no-attributes", action="store_true", help="skip the per-attribute plots")
    parser.set_defaults(func=run)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write into {out}: {(error.strerror or str(error)).lower()}") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"cannot write into {out}: permission denied")


def run(args: argparse.Namespace) -> int:
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.report import write_report
    from chattracker_eval.scoring import score_results

    names = args.names or [Path(r).name or r for r in args.results]
    if len(names) != len(args.results):
        raise InputError(f"--names has {len(names)} name(s) for {len(args.results)} --results folder(s)")
    _check_out(Path(args.out))  # before scoring, which can take a while on a full benchmark
    options = {"split": args.split} if args.split and args.benchmark in ("lasot", "lasot_ext", "tnl2k") else {}
    benchmark = load_dataset(args.benchmark, args.annotations, **options)
    reports = [score_results(benchmark, folder, args.protocol) for folder in args.results]
    require_scored(reports, args.benchmark)
    with staged_into(Path(args.out)) as staging:  # a full disk or a crash leaves --out as it was
        written = write_report(reports, names, staging, attributes=not args.no_attributes)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8").rstrip())
    print(f"\n{len(written)} files written to {args.out}/")
    return 0
