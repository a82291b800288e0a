"""`chattracker audit`: which sentences of a benchmark do not ground their target, why, and a rewrite that does."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml
from tqdm import tqdm

from chattracker.errors import InputError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="check that each sentence of a benchmark grounds its target",
        description="For each sequence with a sentence, ground the sentence on frame 1 and on a few sampled frames "
                    "with ground truth (as `track --text` would start from it), flag sentences whose best box misses "
                    "the target or lands on a distractor, say why, and give RPO's rewrite (started from the "
                    "ground-truth box) with whether it grounds the target. Prints a table; writes one JSON per "
                    "sequence, summary.json, a picture of frame 1 per flagged sequence and rewrites.yaml (the rewrites "
                    "that ground the target, for `eval --sentences`) into --out.")
    parser.add_argument("--dataset", required=True, help="lasot, lasot_ext, tnl2k, otb, otb99_lang, folder, ...")
    parser.add_argument("--root", required=True, help="dataset root (with images)")
    parser.add_argument("--sequences", nargs="+", help="only these sequences")
    parser.add_argument("--split", choices=("test", "all"), help="LaSOT/TNL2K: test list (default) or all")
    parser.add_argument("--sentences", metavar="YAML", help="sequence -> sentence mapping to audit instead of the dataset's")
    parser.add_argument("--frames", type=int, default=4, help="frames grounded per sequence, frame 1 included (default 4)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU with the ground truth that counts as the target (0.5)")
    parser.add_argument("--config", help="YAML with a language_start section (grounder, thresholds) and rpo settings")
    parser.add_argument("--out", help="output folder (default runs/audit_<dataset>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker.audit import audit_sequence
    from chattracker.config import load_yaml
    from chattracker.language_start import LanguageStart, build_language_start, draw_candidates
    from chattracker.results import atomic_write_text, write_json
    from chattracker.rpo import RPOConfig
    from chattracker.types import Box
    from chattracker.video import read_image
    from chattracker_eval.datasets import load_dataset
    from chattracker_eval.sentences import with_sentences

    if args.frames < 1:
        raise InputError("--frames must be at least 1")
    if not 0.0 < args.iou <= 1.0:
        raise InputError("--iou must be within (0, 1]")
    settings = load_yaml(args.config) if args.config else {}
    options = {"split": args.split} if args.split and args.dataset in ("lasot", "lasot_ext", "tnl2k") else {}
    benchmark = load_dataset(args.dataset, args.root, **options)
    sequences = benchmark.sequences.select(list(dict.fromkeys(args.sequences)) if args.sequences else None)
    if args.sentences:
        sequences = with_sentences(sequences, args.sentences, benchmark.sequences.names())
    spoken = [s for s in sequences if s.language.strip()]
    if not spoken:
        raise InputError(f"no sequence of {args.dataset} under {args.root} has a sentence to audit (give them with --sentences)")
    for sequence in spoken:
        sequence.frames  # an annotation-only layout fails here, once, before any work
    config, grounder, describer = build_language_start(settings.get("language_start"))
    rpo = RPOConfig.from_dict(settings.get("rpo"))
    out = Path(args.out) if args.out else Path("runs") / f"audit_{args.dataset}"
    audits = []
    for sequence in tqdm(spoken, unit="seq", desc="audit", disable=args.no_progress):
        frames = sequence.frames
        audit = audit_sequence(sequence.name, " ".join(sequence.language.split()), lambda i: read_image(frames[i]),
                               sequence.ground_truth, sequence.absent, grounder, describer, config, args.frames, args.iou, rpo)
        write_json(out / f"{sequence.name}.json", audit.to_json())
        if audit.flagged:  # frame 1: the truth, and the sentence's candidates (none when nothing was found)
            start = audit.frames[0].start or LanguageStart(audit.sentence, [], [], None)
            draw_candidates(read_image(frames[0]), start, out / f"{sequence.name}.png",
                            Box.from_any(sequence.ground_truth[0]))
        audits.append(audit)
    flagged = [a for a in audits if a.flagged]
    write_json(out / "summary.json", {"dataset": args.dataset, "root": str(args.root), "iou": args.iou,
                                      "frames": args.frames, "audited": len(audits), "flagged": len(flagged),
                                      "sequences": {a.name: {"flagged": a.flagged, "reason": a.reason,
                                                             "rewrite": a.rewrite or None} for a in audits}})
    rewrites = {a.name: a.rewrite for a in flagged if a.rewrite_grounds}
    atomic_write_text(out / "rewrites.yaml", yaml.safe_dump(rewrites, sort_keys=False, allow_unicode=True) if rewrites
                      else "{}\n")  # `eval --sentences` reads it: the flagged sentences replaced by rewrites that ground
    print(f"{'sequence':<24} {'verdict':<8} {'hits':>5} {'IoU@1':>6}  sentence -> reason")
    for audit in audits:
        verdict = "FLAG" if audit.flagged else "ok"
        print(f"{audit.name[:24]:<24} {verdict:<8} {audit.hits:>2}/{len(audit.frames):<2} {audit.frames[0].best_iou:>6.2f}  "
              f"{audit.sentence!r} -> {audit.reason}")
        if audit.flagged and audit.rewrite:
            grounds = "grounds the target" if audit.rewrite_grounds else "does not ground the target either"
            print(f"{'':<24} rewrite: {audit.rewrite!r} ({grounds}, IoU {audit.rewrite_iou or 0:.2f})")
    skipped = len(sequences) - len(spoken)
    print(f"{args.dataset}: audited {len(audits)} sentence(s), flagged {len(flagged)}"
          + (f", {skipped} sequence(s) without a sentence skipped" if skipped else "") + f" -> {out}/")
    return 0
