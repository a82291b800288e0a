"""`chattracker score`: score result folders against a benchmark's annotations (no tracking)."""

from __future__ import annotations

import argparse
import json

from chattracker.errors import InputError

from chattracker_eval.protocols import PROTOCOL_NAMES

# Every dataset with ground truth (GOT-10k and TrackingNet: their val/train splits; test splits are packed).
BENCHMARKS = ("lasot", "lasot_ext", "tnl2k", "otb99_lang", "otb", "vot", "folder", "got10k", "trackingnet", "uav123",
              "uav123_10fps", "uav20l")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score", help="score tracking results with the official toolkits' rules (or pytracking's)",
        description="Score one or more folders of <seq>.txt result files. --annotations is a dataset root or an "
                    "official toolkit folder (annos/ ...). Missing result files are listed; the protocol and the "
                    "number of sequences scored are always printed.")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    parser.add_argument("--annotations", required=True, help="dataset root or official toolkit annotation folder")
    parser.add_argument("--results", required=True, action="append", help="folder of <seq>.txt files (repeatable)")
    parser.add_argument("--protocol", default="official", choices=PROTOCOL_NAMES,
                        help="official (MATLAB toolkits, default) or pytracking (Python-scored papers)")
    parser.add_argument("--split", default=None, choices=("test", "all"),
                        help="which sequences (default: the benchmark's test list when found)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (a list for several --results)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.scoring import score_results

    options = {"split": args.split} if args.split and args.benchmark in ("lasot", "lasot_ext", "tnl2k") else {}
    benchmark = load_dataset(args.benchmark, args.annotations, **options)
    reports = [score_results(benchmark, folder, args.protocol) for folder in args.results]
    require_scored(reports, args.benchmark)
    if args.json:
        payload = [r.to_json() for r in reports]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return 0
    print(format_table(reports))
    return 0


def require_scored(reports, benchmark: str) -> None:
    """Scoring nothing is no result: an empty folder or the wrong benchmark must not pass for a score of 0."""
    empty = [str(report.results) for report in reports if report.num_sequences == 0]
    if empty:
        raise InputError(f"no result file in {', '.join(empty)} matches a sequence of {benchmark} "
                         f"(expected <sequence>.txt files, e.g. {reports[0].missing[0] if reports[0].missing else '?'}.txt); "
                         "nothing to score")


def format_table(reports) -> str:
    first = reports[0]
    total = len(first.per_sequence) + len(first.missing)
    lines = [f"{first.benchmark}, protocol {first.protocol}, {total} sequence(s) in the benchmark", f"{'results':<32} {'init':<12} {'seqs':>5} {'AUC':>7} {'P':>7} {'P_norm':>7} {'OP50':>7} {'OP75':>7}  missing"]
    for report in reports:
        s = report.average.curves.summary()
        lines.append(f"{report.label[:32]:<32} {report.init:<12} {report.num_sequences:>5} {s['auc']:>7.2f} {s['precision']:>7.2f} "
                     f"{s['norm_precision']:>7.2f} {s['op50']:>7.2f} {s['op75']:>7.2f}  {len(report.missing)}")
    for report in reports:
        left_out = {k: report.num_sequences - v for k, v in report.average.used.items() if v < report.num_sequences}
        if left_out:
            lines.append(f"{report.label}: sequences with an all-zero curve are left out of that average, as the "
                         f"toolkit does: {', '.join(f'{k} {v}' for k, v in left_out.items())}")
    for report in reports:
        if report.missing:
            shown = ", ".join(report.missing[:8]) + (" ..." if len(report.missing) > 8 else "")
            lines.append(f"missing in {report.results}: {shown}")
    if any(report.init == "language" for report in reports):
        lines.append("init language: frame 1 was predicted from the sentence and is scored as predicted "
                     "(box, box+language: frame 1 is the ground truth)")
    return "\n".join(lines)
