"""The offload benchmark's --quick smoke mode runs end to end and reports every key the full run reports."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "offload.py"


def test_quick_benchmark_reports_every_method_regime_and_target(tmp_path):
    out = tmp_path / "quick.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--workdir", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["storage_read_bytes_per_s"] > 0
    assert report["page_cache"].startswith("engine expert reads: ")
    for regime in ("as_built", "zipf"):
        entry = report["summary"][regime]["0.25"]
        methods = ("fate", "fate-int2", "lod", "eap", "accelerate")
        assert {*methods, "bound", "ratios", "targets"} <= set(entry)
        assert all("error" not in entry[method] for method in methods)
        assert {"decode_within_1.25x_bound", "decode_3x_faster_than_accelerate", "decode_not_slower_than_lod",
                "peak_rss_within_budget_plus_non_expert_plus_15pct",
                "peak_anon_rss_above_start_within_budget_plus_non_expert_plus_15pct"} <= set(entry["targets"])
        assert {"fate_decode_speedup_vs_lod", "fate_decode_speedup_vs_lod_paired",
                "fate_decode_speedup_vs_lod_overlap_paired", "fate_int2_tail_prefill_speedup_vs_fate"} <= set(entry["ratios"])
        assert set(entry["paired"]["decode_tok_s"]) == {"fate", "lod", "lod-overlap"}
        assert entry["fate-int2"]["prefill_loads_cold"] > 0 and entry["fate"]["prefill_loads_cold"] == 0
        targets = entry["targets"]
        # library code is only ever taken out of total RSS, never more than was paged in
        assert targets["peak_rss_less_library_above_start_bytes"] <= targets["peak_total_rss_above_start_bytes"]
        fate = entry["fate"]
        assert fate["decode_tok_s"] > 0 and {"decode_hit_rate", "decode_bytes_per_token", "decode_gate_skips"} <= set(fate)
        assert entry["lod"]["decode_gate_skips"] == 0  # no predictor, no gate to skip
