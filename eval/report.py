"""Comparison reports: a markdown and a CSV table, and success / precision / normalized-precision plots
(overall and per attribute) drawn like the official toolkits' figures: thick lines, dotted grid, the
score in brackets before each name, the legend ranked best first."""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chattracker.results import atomic_write_text  # noqa: E402
from chattracker_eval.metrics import (  # noqa: E402
    NORM_PRECISION_INDEX, NORM_PRECISION_THRESHOLDS, PRECISION_INDEX, PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS,
    Average,
)
from chattracker_eval.scoring import ScoreReport  # noqa: E402

logger = logging.getLogger(__name__)

BENCHMARK_TITLES = {"lasot": "LaSOT", "lasot_ext": "LaSOT_ext", "tnl2k": "TNL2K", "otb": "OTB100",
                    "otb99_lang": "OTB99-lang", "vot": "VOT", "folder": "sequences"}
# The toolkits' first colours (config_plot_style.m), solid, then dashed, then dash-dotted.
TOOLKIT_COLORS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0), (1, 0, 1), (0, 1, 1), (0.5, 0.5, 0.5),
                  (136 / 255, 0, 21 / 255), (1, 127 / 255, 39 / 255), (0, 162 / 255, 232 / 255),
                  (163 / 255, 73 / 255, 164 / 255), (191 / 255, 144 / 255, 0)]
LINE_STYLES = ["-", "--", "-."]


@dataclass(frozen=True)
class PlotKind:
    key: str
    title: str
    xlabel: str
    ylabel: str
    legend: str


PLOTS = (
    PlotKind("success", "Success plots of OPE", "Overlap threshold", "Success rate", "lower left"),
    PlotKind("precision", "Precision plots of OPE", "Location error threshold", "Precision", "lower right"),
    PlotKind("norm_precision", "Normalized Precision plots of OPE", "Location error threshold", "Precision",
             "lower right"),
)


def _curve_and_score(average: Average, kind: str):
    curves = average.curves
    if kind == "success":
        return SUCCESS_THRESHOLDS, curves.success, curves.auc
    if kind == "precision":
        return PRECISION_THRESHOLDS, curves.precision, float(curves.precision[PRECISION_INDEX])
    return NORM_PRECISION_THRESHOLDS, curves.norm_precision, float(curves.norm_precision[NORM_PRECISION_INDEX])


def plot_curves(entries: list[tuple[str, Average]], kind: PlotKind, title: str, path: Path) -> None:
    """One toolkit-style figure; ``entries`` are (label, average). Success is ranked by AUC, the two
    precision plots by their value at 20 px / 0.2, as the toolkits rank them."""
    scored = []
    for label, average in entries:
        x, y, score = _curve_and_score(average, kind.key)
        scored.append((score if not math.isnan(score) else -1.0, label, x, y))
    scored.sort(key=lambda item: item[0], reverse=True)
    figure, axes = plt.subplots(figsize=(7.2, 6.0), dpi=100)
    for index, (score, label, x, y) in enumerate(scored):
        color = TOOLKIT_COLORS[index % len(TOOLKIT_COLORS)]
        style = LINE_STYLES[(index // len(TOOLKIT_COLORS)) % len(LINE_STYLES)]
        axes.plot(x, y, color=color, linestyle=style, linewidth=4, label=f"[{score:.3f}] {label}")
    axes.grid(True, linestyle=":", color="k", linewidth=1.0, alpha=1.0)
    axes.set_xlim(float(scored[0][2][0]), float(scored[0][2][-1]))
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=13)
    axes.set_xlabel(kind.xlabel, fontsize=14)
    axes.set_ylabel(kind.ylabel, fontsize=14)
    axes.tick_params(labelsize=12)
    axes.legend(loc=kind.legend, fontsize=10 if len(scored) < 8 else 8, frameon=True, edgecolor="black")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, format="png")
    plt.close(figure)
    temporary.replace(path)


def summary_rows(reports: list[ScoreReport], names: list[str]) -> list[dict]:
    rows = []
    for name, report in zip(names, reports):
        s = report.average.curves.summary()
        rows.append({"tracker": name, "results": report.results, "protocol": report.protocol,
                     "benchmark": report.benchmark, "sequences": report.num_sequences,
                     "missing": len(report.missing), "auc": s["auc"], "precision": s["precision"],
                     "norm_precision": s["norm_precision"], "op50": s["op50"], "op75": s["op75"], "init": report.init})
    rows.sort(key=lambda row: -row["auc"] if not math.isnan(row["auc"]) else math.inf)
    return rows


def write_report(reports: list[ScoreReport], names: list[str], out: str | Path, attributes: bool = True) -> list[Path]:
    """Write ``report.md``, ``report.csv`` and the PNG plots into ``out``; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = reports[0]
    bench = BENCHMARK_TITLES.get(first.benchmark, first.benchmark)
    count = first.num_sequences
    tag = f"{bench}, {count} sequence{'' if count == 1 else 's'}, {first.protocol} protocol"
    written: list[Path] = []
    for kind in PLOTS:
        path = out / f"{kind.key}.png"
        plot_curves([(n, r.average) for n, r in zip(names, reports)], kind, f"{kind.title} on {bench}\n({tag})", path)
        written.append(path)
    attribute_rows = []
    if attributes:
        for short in [a.short for a in first.attributes]:
            per_tracker = []
            for name, report in zip(names, reports):
                match = next((a for a in report.attributes if a.short == short), None)
                if match is not None:
                    per_tracker.append((name, match))
            if not per_tracker:
                continue
            long_name, used = per_tracker[0][1].name, per_tracker[0][1].average.num_sequences
            for kind in PLOTS:
                path = out / "attributes" / f"{short}_{kind.key}.png"
                title = f"{kind.title} - {long_name} ({used})\n({bench}, {first.protocol} protocol)"
                plot_curves([(n, a.average) for n, a in per_tracker], kind, title, path)
                written.append(path)
            attribute_rows.append((short, long_name, used,
                                   {n: 100 * a.average.curves.auc for n, a in per_tracker}))
    rows = summary_rows(reports, names)
    written += write_sequence_tables(reports, names, out)
    written.append(_write_csv(rows, out / "report.csv"))
    written.append(_write_markdown(rows, attribute_rows, names, reports, tag, out / "report.md"))
    return written


def _write_csv(rows: list[dict], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
    return path


SEQUENCE_SCORES = (("auc", "AUC"), ("precision", "P"), ("norm_precision", "P_norm"))


def sequence_rows(reports: list[ScoreReport], names: list[str]) -> list[dict]:
    """One row per sequence and tracker (values in percent; a sequence a tracker has no result for is absent),
    the long form a spreadsheet sorts and filters: where does one tracker win or lose against another."""
    rows = []
    for name, report in zip(names, reports):
        for sequence, curves in report.per_sequence.items():
            summary = curves.summary()
            rows.append({"sequence": sequence, "tracker": name, **{key: summary[key] for key, _ in SEQUENCE_SCORES}})
    return rows


def write_sequence_tables(reports: list[ScoreReport], names: list[str], out: Path) -> list[Path]:
    """``sequences.csv`` (long form) and ``sequences.md``: a row per sequence, AUC, P and P_norm per tracker,
    the sequences ranked by the first tracker's AUC (worst first: where to look)."""
    rows = sequence_rows(reports, names)
    written = [_write_csv(rows, out / "sequences.csv")] if rows else []
    table: dict[str, dict[str, dict]] = {}
    for row in rows:
        table.setdefault(row["sequence"], {})[row["tracker"]] = row
    first = names[0]
    ranked = sorted(table, key=lambda seq: (table[seq].get(first, {}).get("auc", math.inf), seq))
    header = " | ".join(f"{_cell(n)} {label}" for n in names for _, label in SEQUENCE_SCORES)
    lines = [f"# Scores per sequence ({len(table)} sequences)", "",
             f"Values in percent, worst AUC of {_cell(first)} first; `sequences.csv` holds the same rows in long form "
             "for sorting by any column.", "",
             f"| sequence | {header} |", "|---|" + "---:|" * (len(names) * len(SEQUENCE_SCORES))]
    for sequence in ranked:
        cells = [f"{table[sequence][n][key]:.2f}" if n in table[sequence] else "-"
                 for n in names for key, _ in SEQUENCE_SCORES]
        lines.append(f"| {_cell(sequence)} | {' | '.join(cells)} |")
    path = out / "sequences.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return [*written, path]


def _cell(text: str) -> str:
    """Text for a markdown table cell: a ``|`` would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _write_markdown(rows: list[dict], attribute_rows: list, names: list[str], reports: list[ScoreReport],
                    tag: str, path: Path) -> Path:
    lines = [f"# Tracking results: {tag}", "",
             "| tracker | sequences | missing | AUC | P@20 | P_norm@0.2 | OP50 | OP75 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {_cell(row['tracker'])} | {row['sequences']} | {row['missing']} | {row['auc']:.2f} | "
                     f"{row['precision']:.2f} | {row['norm_precision']:.2f} | {row['op50']:.2f} | {row['op75']:.2f} |")
    lines += ["", "Values in percent. AUC = mean success over IoU thresholds 0:0.05:1; P@20 = precision at 20 px;",
              "P_norm@0.2 = normalized precision at 0.2.", "",
              "Frame 1 (--init): " + ", ".join(f"{_cell(row['tracker'])} {row['init']}" for row in rows)
              + " (box: the ground truth; box+language: the ground truth and the sentence; language: the sentence "
              "alone, frame 1 predicted and scored as predicted).", "",
              "Plots: `success.png`, `precision.png`, `norm_precision.png`"
              + (", per attribute in `attributes/`." if attribute_rows else "."),
              "Per sequence: `sequences.md` (AUC, P, P_norm of every tracker) and `sequences.csv`."]
    if attribute_rows:
        lines += ["", "## AUC per attribute", "", "| attribute | sequences | " + " | ".join(map(_cell, names)) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for short, long_name, used, values in attribute_rows:
            cells = " | ".join(f"{values[n]:.2f}" if n in values else "-" for n in names)
            lines.append(f"| {short} ({long_name}) | {used} | {cells} |")
    missing = [(n, r) for n, r in zip(names, reports) if r.missing]
    if missing:
        lines += ["", "## Missing result files", ""]
        for name, report in missing:
            lines.append(f"- {name} ({report.results}): {', '.join(report.missing)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
