"""The benchmark figures of the README and of the documentation pages are the committed results they quote.

Protects the text against stale figures: each figure here is a benchmark result, so the page gives the command
and the committed output that produced it; this test reads both and fails when they disagree. When a bench is
rerun, update the figures in the page text (the one place they are written); these tests recompute every one
from the new JSON. Which page carries which figures is ``PAGES`` below. (Figures that are facts about code are
pinned by the tests of that code: the protocol reference values in ``test_eval_benchmarks.py`` and
``test_eval_metrics.py``, the describe table in ``test_rpo_real.py``.)
"""

from __future__ import annotations

import json
import re
from functools import cache
from statistics import mean

import pytest

from tests.conftest import REPO_ROOT

RESULTS = REPO_ROOT / "docs" / "results"
MIB = 2**20

# page -> what it quotes: README's results table, then one page per benchmark
PAGES = {
    "README": "README.md",
    "fusion": "docs/benchmarks/fusion.md",  # bench/fusion.py tables, bounds, untuned bases, base loss
    "offload": "docs/benchmarks/offload.md",  # bench/offload.py, single sequence and batch groups
    "language": "docs/benchmarks/language-start.md",  # bench/language_start.py and the --init language runs
    "demo": "docs/benchmarks/demo.md",  # the demo's seeds table
    "evaluation": "docs/guide/evaluation.md",  # the airplane-1 report example
}


@cache
def page(key: str) -> str:
    return (REPO_ROOT / PAGES[key]).read_text()


def folded(key: str) -> str:
    """The page with its line breaks folded, so a figure may wrap."""
    return " ".join(page(key).split())


def table_row(key: str, label: str) -> list[str]:
    """The cells after ``label`` of the page's table row that starts with it."""
    rows = [line for line in page(key).splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"{PAGES[key]} has {len(rows)} rows labelled {label!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")[1:]]


def offload_row(label: str) -> list[str]:
    return table_row("offload", label)


@pytest.fixture(scope="module")
def offload():
    assert "[docs/results/offload_bench.json](../results/offload_bench.json)" in page("offload")
    assert "uv run python bench/offload.py --out" in folded("offload")  # the command that writes it
    summary = json.loads((RESULTS / "offload_bench.json").read_text())["summary"]
    return [summary["as_built"]["0.25"], summary["zipf"]["0.25"]]


def test_offload_speed_table_is_the_committed_run(offload):
    def cells(values, digits, unit=""):
        return " / ".join(f"{v:.{digits}f}" for v in values) + unit

    assert offload_row("decode tok/s: fate / lod / eap / accelerate / resident") == [
        cells([r["fate"]["decode_tok_s"], r["lod"]["decode_tok_s"], r["eap"]["decode_tok_s"]], 1) + " / "
        + f"{r['accelerate']['decode_tok_s']:.2f} / {1 / r['bound']['resident_decode_s_per_token']:.1f}"
        for r in offload]
    assert offload_row("paired decode tok/s: fate / lod / lod-overlap") == [
        cells([r["paired"]["decode_tok_s"][m] for m in ("fate", "lod", "lod-overlap")], 1) for r in offload]
    assert offload_row("IO wait per decode token, paired: fate / lod / lod-overlap") == [
        cells([1000 * mean(r["paired"]["decode_io_wait_s_per_token_by_round"][m]) for m in ("fate", "lod", "lod-overlap")],
              1, " ms") for r in offload]
    ratios = {
        "fate decode / bound (target <= 1.25)": ("fate_decode_over_bound", ""),
        "fate decode speedup vs accelerate (target >= 3)": ("fate_decode_speedup_vs_accelerate", "x"),
        "fate decode speedup vs load-on-demand, paired (target >= 1)": ("fate_decode_speedup_vs_lod_paired", "x"),
        "the same, from the separate processes": ("fate_decode_speedup_vs_lod", "x"),
        "fate decode speedup vs lod-overlap, paired (ablation)": ("fate_decode_speedup_vs_lod_overlap_paired", "x"),
    }
    for label, (key, unit) in ratios.items():
        digits = 1 if "accelerate" in label else 2
        assert offload_row(label) == [f"{r['ratios'][key]:.{digits}f}{unit}" for r in offload], label
    assert offload_row("fate-int2 prefill tok/s vs fate (bytes read)") == [
        f"{r['ratios']['fate_int2_tail_prefill_speedup_vs_fate']:.2f}x "
        f"({r['ratios']['fate_int2_tail_prefill_bytes_vs_fate']:.2f}x)" for r in offload]


def test_offload_memory_rows_are_the_committed_run(offload):
    limit = offload[0]["targets"]["rss_limit_bytes"] / MIB
    assert offload_row(f"peak memory above start, less library code (limit {limit:.1f} MiB)") == [
        f"{r['targets']['peak_rss_less_library_above_start_bytes'] / MIB:.1f} MiB" for r in offload]
    library = offload[0]["targets"]["library_code_paged_in_bytes"] / MIB
    assert offload_row(f"the same including library code ({library:.0f} MiB)") == [
        f"{r['targets']['peak_total_rss_above_start_bytes'] / MIB:.1f} MiB" for r in offload]


def test_evaluation_example_is_the_committed_report():
    report = (RESULTS / "lasot_airplane-1_clip600_report.md").read_text()
    assert "(../results/lasot_airplane-1_clip600_report.md)" in page("evaluation")
    auc = {row[0]: row[3] for row in (
        [c.strip() for c in line.strip("|").split("|")] for line in report.splitlines()
        if line.startswith("| ") and not line.startswith("| tracker"))}
    sentence = re.search(r"\(ChatTracker\(NanoTrack v2\) ([\d.]+) AUC, NanoTrack v2 ([\d.]+), v1 ([\d.]+), "
                         r"CSRT ([\d.]+), KCF ([\d.]+); official protocol, 1 sequence\)", folded("evaluation"))
    assert sentence, "the evaluation page's example sentence changed form"
    assert list(sentence.groups()) == [auc[name] for name in
                                       ("chattracker_nanotrack_v2", "nanotrack_v2", "nanotrack_v1", "csrt", "kcf")]


def test_offload_prose_figures_are_the_committed_run(offload):
    run = json.loads((RESULTS / "offload_bench.json").read_text())
    text = folded("offload")
    assert (f"INT4 store {run['model']['expert_store_bytes'] / MIB:.0f} MiB, "
            f"O_DIRECT reads {run['storage_read_bytes_per_s'] / 1e6:.0f} MB/s") in text
    built, zipf = offload
    assert (f"decode precision {built['fate']['decode_precision']:.2f} as built, "
            f"{zipf['fate']['decode_precision']:.2f} with Zipf") in text
    assert f"LRU hit rate {built['lod']['decode_hit_rate']:.2f} / {zipf['lod']['decode_hit_rate']:.2f}" in text


def test_cross_validated_fusion_tables_are_the_committed_runs():
    """The fusion page's cross-validated tables (NanoTrack v2 first, then CSRT) are ``fusion_cv_<base>.json``."""
    text = page("fusion")
    for index, (base, label) in enumerate((("nanotrack_v2", "NanoTrack v2"), ("csrt", "CSRT"))):
        assert f"uv run python bench/fusion.py --folds 0{'' if base == 'nanotrack_v2' else ' --base csrt'} --json docs/results/fusion_cv_{base}.json" in text
        report = json.loads((RESULTS / f"fusion_cv_{base}.json").read_text())
        for name, row in report["sequences"].items():
            rows = [line for line in text.splitlines() if line.startswith(f"| {name} | ") and line.count("|") == 11]
            cells = [cell.strip() for cell in rows[index].strip("|").split("|")[1:]]
            assert cells[:4] == [f"{row['base']['auc']:.2f}", f"{row['chattracker']['auc']:.2f}",
                                 f"{row['delta_auc']:+.2f}", f"{row['oracle']['auc']:.2f}"], (base, name)
            switches = row["switches"]
            assert cells[4] == f"{switches['made']} / {switches['undone']} / {switches['helped']} / {switches['hurt']}"
        mean = table_row("fusion", f"**mean, cross-validated {label}**")
        assert mean[:3] == [f"{report['mean']['base']['auc']:.2f}", f"{report['mean']['chattracker']['auc']:.2f}",
                            f"{report['mean']['delta_auc']:+.2f}"]


def test_fusion_table_is_the_committed_run():
    """The wrapper's development-set table (the fusion benchmark page) is the committed JSON."""
    assert "uv run python bench/fusion.py --json docs/results/fusion_bench_nanotrack_v2.json" in page("fusion")
    report = json.loads((RESULTS / "fusion_bench_nanotrack_v2.json").read_text())
    for name, row in report["sequences"].items():
        rows = [line for line in page("fusion").splitlines()  # the NanoTrack table has 11 columns, CSRT's 8
                if (line.startswith(f"| {name} | tune |") or line.startswith(f"| {name} | held out |"))
                and line.count("|") == 12]
        assert len(rows) == 1, name
        cells = [cell.strip() for cell in rows[0].strip("|").split("|")[1:]]
        assert [float(cells[2]), float(cells[3]), float(cells[5])] == [
            round(row["base"]["auc"], 2), round(row["chattracker"]["auc"], 2), round(row["oracle"]["auc"], 2)], name
    mean_cells = table_row("fusion", "**mean**")
    assert float(mean_cells[2]) == round(report["mean"]["base"]["auc"], 2)
    assert float(mean_cells[3].strip("*")) == round(report["mean"]["chattracker"]["auc"], 2)


def test_fusion_csrt_table_is_the_committed_run():
    assert "uv run python bench/fusion.py --base csrt --json\ndocs/results/fusion_bench_csrt.json" in page("fusion")
    report = json.loads((RESULTS / "fusion_bench_csrt.json").read_text())
    for name, row in report["sequences"].items():
        rows = [line for line in page("fusion").splitlines()
                if line.startswith(f"| {name} | ") and line.count("|") == 9]
        assert len(rows) == 1, name
        cells = [cell.strip() for cell in rows[0].strip("|").split("|")[1:]]
        assert [float(cells[1]), float(cells[2]), float(cells[4])] == [
            round(row["base"]["auc"], 2), round(row["chattracker"]["auc"], 2), round(row["oracle"]["auc"], 2)], name


def test_correction_bound_figures_are_the_committed_runs():
    """The bound of correcting the base on the truth every 10 frames (fusion page, beside the oracle)."""
    assert "uv run python bench/correction_bound.py --json\ndocs/results/correction_bound_nanotrack_v2.json" in page("fusion")
    flat = folded("fusion")
    for name in ("nanotrack_v2", "csrt"):
        report = json.loads((RESULTS / f"correction_bound_{name}.json").read_text())
        assert report["every"] == 10 and len(report["sequences"]) == 15
        mean = report["mean"]
        assert f"{mean['base_auc']:.2f} -> {mean['bound_auc']:.2f}" in flat, name
    nanotrack = json.loads((RESULTS / "correction_bound_nanotrack_v2.json").read_text())
    assert nanotrack["mean"]["sequences_up_2"] == 15 and "every one of the 15 up by 2 or more" in flat


def test_untuned_bases_figures_are_the_committed_runs():
    """The wrapper around bases never used for tuning (fusion page, after the CSRT table)."""
    flat = folded("fusion")
    assert "uv run python bench/fusion.py --base kcf --no-oracle --json docs/results/fusion_bench_kcf_no_oracle.json" in flat
    for name in ("kcf", "nanotrack_v1"):
        mean = json.loads((RESULTS / f"fusion_bench_{name}_no_oracle.json").read_text())["mean"]
        figure = f"{mean['base']['auc']:.2f} -> {mean['chattracker']['auc']:.2f} ({mean['delta_auc']:+.2f}, "
        assert figure in flat, name


# ---- the Klotski batch-group table (bench/offload.py --batches) ------------------------------------------------------
def batch_table(report: dict) -> dict[str, list[str]]:
    """Offload page row label -> cells (as_built, correlated), from ``docs/results/offload_batches.json``."""
    batches = [str(n) for n in report["batches"]]
    names = "/".join(batches)
    regimes = [report["regimes"][r] for r in ("as_built", "correlated")]

    def per_n(regime, method, key, fmt, scale=1.0):
        return " / ".join(format(scale * regime[method][n][key], fmt) for n in batches)

    rows = {
        f"generated tok/s (prefill + decode), klotski n={names}": [per_n(r, "klotski", "tok_s", ".1f") for r in regimes],
        "decode tok/s, klotski": [per_n(r, "klotski", "decode_tok_s", ".1f") for r in regimes],
        "decode tok/s, fate naively batched": [per_n(r, "fate_batched", "decode_tok_s", ".1f") for r in regimes],
        "decode tok/s, everything resident (compute only)": [per_n(r, "resident", "decode_tok_s", ".1f")
                                                             for r in regimes],
        "per-sequence latency, klotski (s)": [per_n(r, "klotski", "latency_s_per_sequence", ".1f") for r in regimes],
        "klotski decode hit rate": [per_n(r, "klotski", "decode_hit_rate", ".2f") for r in regimes],
        "klotski decode MB read per token": [per_n(r, "klotski", "decode_bytes_per_token", ".1f", 1e-6)
                                             for r in regimes],
        "klotski decode IO-wait share": [per_n(r, "klotski", "decode_io_share", ".2f") for r in regimes],
        "klotski decode / bound max(compute, reads)": [
            " / ".join(f"{r['bound'][n]['klotski_decode_vs_bound']:.2f}" for n in batches) for r in regimes],
        "planner's n (best measured n)": [f"{r['targets']['planner_n']} ({r['targets']['best_measured_n']})"
                                          for r in regimes],
        "planner's n: share of best measured (target >= 0.8)": [f"{r['targets']['planner_share_of_best']:.2f}"
                                                                for r in regimes],
        "klotski at planner's n vs fate n=1 (target >= 3)": [f"{r['targets']['speedup_vs_fate_n1']:.2f}x"
                                                             for r in regimes],
        "the same, decode only": [f"{r['targets']['decode_speedup_vs_fate_n1']:.2f}x" for r in regimes],
        "klotski at planner's n vs accelerate n=1 (target >= 20)": [f"{r['targets']['speedup_vs_accelerate']:.1f}x"
                                                                    for r in regimes],
        "klotski at planner's n / bound (target <= 1.3)": [
            f"{r['targets']['klotski_decode_vs_bound_at_planner_n']:.2f}" for r in regimes],
        "klotski at planner's n / everything resident": [
            f"{r['targets']['klotski_vs_resident_at_planner_n']:.2f}" for r in regimes],
        "paired n=1 decode s/token: fate / lod": [
            f"{r['paired_n1']['decode_s_per_token']['fate']:.3f} / {r['paired_n1']['decode_s_per_token']['lod']:.3f}"
            for r in regimes],
        "paired n=1: fate speedup vs lod": [f"{r['paired_n1']['fate_decode_speedup_vs_lod']:.2f}x" for r in regimes],
        "paired n=1 IO share of decode: fate / lod": [
            f"{r['paired_n1']['decode_io_share']['fate']:.2f} / {r['paired_n1']['decode_io_share']['lod']:.2f}"
            for r in regimes],
        "paired n=1 decode hit rate: fate / lod": [
            f"{r['paired_n1']['decode_hit_rate']['fate']:.2f} / {r['paired_n1']['decode_hit_rate']['lod']:.2f}"
            for r in regimes],
    }
    return rows


def test_batch_group_table_is_the_committed_run():
    assert "[docs/results/offload_batches.json](../results/offload_batches.json)" in page("offload")
    assert "uv run python bench/offload.py --batches 1,2,4,8,16,32,64 --out" in page("offload")  # the command
    report = json.loads((RESULTS / "offload_batches.json").read_text())
    for label, cells in batch_table(report).items():
        assert offload_row(label) == cells, label


def test_language_start_tables_are_the_committed_runs():
    section = page("language")
    tables: dict[int, dict[str, list[str]]] = {}  # by column count: the start table has 4, the eval table 3
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            tables.setdefault(len(cells), {})[cells[0]] = cells[1:]
    bench = json.loads((RESULTS / "language_start_bench.json").read_text())["rows"]
    rows = tables[4]
    for row in bench:
        shown = rows[row["sequence"]][1]
        assert float(shown) == pytest.approx(row["iou"], abs=0.005 if len(shown) <= 4 else 0.0005), row["sequence"]
    scores = json.loads((RESULTS / "language_start_eval_nanotrack_v2.json").read_text())["scores"]
    rows = tables[3]
    for label, key in (("Woman", "woman"), ("airplane-1 (600 frames)", "airplane"), ("sot_dev (11)", "sot_dev")):
        box, language = rows[label][0], rows[label][1].split()[0]
        assert (box, language) == (f"{scores[key]['box']['auc']:.2f}", f"{scores[key]['language']['auc']:.2f}"), label


def test_base_loss_figures_are_the_committed_runs():
    """Where the base loses the target and whether its score says so (fusion page, beside the bound)."""
    flat = folded("fusion")
    assert "uv run python bench/base_loss.py --json docs/results/base_loss_nanotrack_v2.json" in flat
    nanotrack = json.loads((RESULTS / "base_loss_nanotrack_v2.json").read_text())
    csrt = json.loads((RESULTS / "base_loss_csrt.json").read_text())
    total, rows = nanotrack["total"], nanotrack["sequences"]
    gaining = sum(rows[n]["lost"] for n in ("DTB70_Gull2", "OTB_Basketball", "airplane-1"))
    assert f"{total['lost']} of the {total['visible_frames']} visible frames, {gaining} of them" in flat
    assert total["low_score"] == 0 and f"under 0.5 on none of the {total['visible_frames']}" in flat
    assert f"flags {csrt['total']['lost_with_low_score']} of its {csrt['total']['lost']} lost frames" in flat
    assert f"MotorRolling ({rows['OTB_MotorRolling']['lost']}," in flat and f"Skiing ({rows['OTB_Skiing']['lost']}," in flat


# ---- the README's results table: every cell recomputed from the JSON it comes from ---------------------------------
def _cv_cells(name: str) -> list[str]:
    """base, ChatTracker, change, losses of a cross-validated development-set row, from ``fusion_cv_<name>.json``."""
    report = json.loads((RESULTS / f"fusion_cv_{name}.json").read_text())
    m = report["mean"]
    better, same, worse = m["better_same_worse"]
    return [f"{m['base']['auc']:.2f}", f"{m['chattracker']['auc']:.2f}", f"{m['delta_auc']:+.2f}",
            f"worst {m['worst_delta']:+.2f}; {better} better, {same} same, {worse} worse; "
            f"{m['delta_auc_without_best']:+.2f} without the best"]


def test_readme_results_table_is_the_committed_runs():
    rows = {
        "development set AUC (26, cross-validated), NanoTrack v2": _cv_cells("nanotrack_v2"),
        "development set AUC (26, cross-validated), CSRT": _cv_cells("csrt"),
    }
    for label, cells in rows.items():
        assert table_row("README", label)[:4] == cells, label
    v2 = json.loads((RESULTS / "fusion_cv_nanotrack_v2.json").read_text())
    assert v2["folds"] == 0 and v2["sequence_count"] == 26
    clip = v2["sequences"]["airplane-1"]
    assert table_row("README", "LaSOT airplane-1[:600] AUC, NanoTrack v2")[:3] == [
        f"{clip['base']['auc']:.2f}", f"{clip['chattracker']['auc']:.2f}",
        f"{clip['chattracker']['auc'] - clip['base']['auc']:+.2f}"]
    m = v2["mean"]
    speed = table_row("README", "speed, NanoTrack v2 (fps)")
    assert speed[:3] == [f"{m['base']['fps']:.1f}", f"{m['chattracker']['fps']:.1f}", f"{m['fps_ratio']:.2f}x"]
    assert speed[3] == f"the wrapper costs {100 * (1 - m['fps_ratio']):.0f}% of the frame rate"

    single = json.loads((RESULTS / "offload_bench.json").read_text())["summary"]["as_built"]["0.25"]
    assert table_row("README", "MoE decode tok/s at a 25% expert budget: load-on-demand vs Fate")[:3] == [
        f"{single['lod']['decode_tok_s']:.2f}", f"{single['fate']['decode_tok_s']:.2f}",
        f"{single['ratios']['fate_decode_speedup_vs_lod']:.2f}x"]
    batches = json.loads((RESULTS / "offload_batches.json").read_text())["regimes"]["as_built"]
    n = batches["targets"]["planner_n"]
    assert table_row("README", f"MoE generated tok/s: Fate one sequence at a time vs Klotski group of {n}")[:3] == [
        f"{batches['fate_batched']['1']['tok_s']:.1f}", f"{batches['targets']['klotski_tok_s_at_planner_n']:.1f}",
        f"{batches['targets']['speedup_vs_fate_n1']:.2f}x"]


def test_readme_demo_row_is_the_committed_seed_run():
    """The demo row of the README and the seeds table of the demo page are ``bench/demo_seeds.py``'s JSON
    (the demo's own scores are pinned by ``test_demo_and_video.py``, which runs it)."""
    report = json.loads((RESULTS / "demo_seeds.json").read_text())["seeds"]
    demo = report["7"]
    held = [r["gain"] for r in report.values() if r["held_out"]]
    base, chat, change, losses = table_row("README", "demo scene, mean IoU")[:4]
    assert [base, chat, change] == [f"{demo['base']:.3f}", f"{demo['chattracker']:.3f}", f"{demo['gain']:+.3f}"]
    assert losses == f"held-out seeds 7-12: {min(held):+.3f} to {max(held):+.3f}"
    for seed, row in report.items():
        label = f"**{seed} (the demo)**" if seed == "7" else seed
        assert table_row("demo", label)[:4] == ["held out" if row["held_out"] else "training", f"{row['base']:.3f}",
                                                 f"{row['chattracker']:.3f}", f"{row['gain']:+.3f}"], seed
