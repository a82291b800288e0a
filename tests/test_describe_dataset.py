"""`chattracker describe --dataset` over the real sot_dev sequences with a tiny random MoE VLM on the offload engine:
batched chat calls, one pack per sequence, resume after SIGKILL, and `eval --descriptions` using the packs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from chattracker.cli import main
from chattracker.types import Box
from chattracker.video import read_image
from tests.test_mllm_hf import build_models

SEQUENCES = 11


@pytest.fixture(scope="module")
def vlm(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.mktemp("describe_vlm"))["moe"]


def _config(folder: Path, model: Path, store: Path, budget: str = "50%", method: str = "klotski") -> Path:
    settings = {"describer": {"name": "hf", "params": {
        "model": str(model), "device": "cpu", "dtype": "float32", "max_new_tokens": 4, "batch_size": 4,
        "offload": {"store": str(store), "expert_budget": budget, "method": method, "group_size": 32}}},
        "grounder": {"name": "yolox"}, "rpo": {"iterations": 1, "ground_background": False}}
    path = folder / f"describe_{method}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_batch_of_frames_gets_the_replies_each_gets_alone_on_the_resident_model(vlm, shared_data, tmp_path):
    from chattracker.mllm.hf import HFDescriber

    store = tmp_path / "store"
    names = ["OTB_Toy", "OTB_Couple", "DTB70_Gull2"]
    root = shared_data / "sot_dev"
    frames = [read_image(sorted((root / name / "img").iterdir())[0]) for name in names]
    boxes = [Box(*np.loadtxt(root / name / "groundtruth.txt", delimiter=",", max_rows=1)) for name in names]

    def describer(method, budget, batch):
        return HFDescriber(str(vlm), device="cpu", dtype="float32", max_new_tokens=6, batch_size=batch,
                           offload={"store": str(store), "expert_budget": budget, "method": method, "group_size": 32})

    def requests(model):
        out = []
        from chattracker.mllm.base import Feedback
        from chattracker.mllm.chat import draw_target, fit_image

        for index, (image, box) in enumerate(zip(frames, boxes)):
            shown, shown_box = fit_image(draw_target(image, box), box, model.image_max_side)
            feedback = Feedback(initial_text="a small red car") if index == 1 else None  # a longer (reflect) prompt
            out.append((model.build_prompt((shown.shape[1], shown.shape[0]), shown_box, feedback), shown))
        return out

    alone = describer("resident", "100%", 1)
    expected = [alone.chat_batch([request])[0][0] for request in requests(alone)]
    batched = describer("klotski", "30%", 3)
    replies = batched.chat_batch(requests(batched))
    assert [reply for reply, _ in replies] == expected
    info = replies[0][1]
    assert (info["batch"], info["group"]) == (3, 3)
    assert info["offload_stats"]["bytes_read"] > 0
    assert info["offload_stats"]["peak_resident_bytes"] <= batched.engine.budget_bytes
    assert len({i["prompt_tokens"] for _, i in replies}) > 1  # prompts of different lengths: the batch was padded


def _packs(out: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name != "describe.json"}


def test_describe_dataset_writes_every_pack_and_resumes_after_sigkill(vlm, shared_data, weights_env, tmp_path):
    config = _config(tmp_path, vlm, tmp_path / "store")
    out = tmp_path / "pack"
    command = [sys.executable, "-m", "chattracker.cli", "describe", "--dataset", "folder", "--root",
               str(shared_data / "sot_dev"), "--out", str(out), "--config", str(config), "--no-progress"]
    first = subprocess.Popen(command + ["--parallel", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not _packs(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=60)
    before = _packs(out)
    assert 0 < len(before) < SEQUENCES, first.stderr.read().decode()[-2000:]

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"skipped {len(before)} already described" in second.stdout
    after = _packs(out)
    assert len(after) == SEQUENCES
    assert all(after[name] == mtime for name, mtime in before.items())  # finished ones were not redone
    assert not list(out.rglob(".*.tmp"))
    rest = SEQUENCES - len(before)
    for name in set(after) - set(before):
        pack = json.loads((out / f"{name}.json").read_text())
        assert pack["sequence"] == name and pack["foreground"] and pack["model_hash"] and pack["prompt_hashes"]
        asked = [r for r in pack["rounds"] if r["source"] == "describer"]
        assert asked and asked[0]["exchanges"][0]["batch"] == rest  # round 1 of every sequence left as one batch
        assert asked[0]["exchanges"][0]["group"] <= 4
        assert (out / "init_nlp" / f"{name}.txt").read_text().strip() == pack["foreground"]
        assert (out / "language" / name / "language.txt").read_text().strip() == pack["foreground"]
    manifest = json.loads((out / "describe.json").read_text())
    assert len(manifest["sequences"]) == SEQUENCES and manifest["batches"][0] == rest


def test_eval_with_descriptions_uses_the_pack_instead_of_rpo(shared_data, weights_env, tmp_path, monkeypatch, capsys):
    import chattracker.rpo
    import chattracker.wrapper
    from chattracker.packs import build_pack, write_pack

    pack = tmp_path / "pack"
    result = {"description": {"foreground": "white toy on the table", "background": "hand. table"}, "top1_iou": 0.7,
              "trace": {"box": [1, 2, 3, 4], "describer": {"describer": "test", "prompts": {"describe": "x"}}}}
    write_pack(pack, build_pack("OTB_Football1", "folder", "f.jpg", result))
    tracker = tmp_path / "tracker.yaml"
    tracker.write_text(yaml.safe_dump({"tracker": "mil", "enhance": True,
                                       "chattracker": {"grounder": "yolox", "describer": "attributes"}}))
    seen = []
    original = chattracker.wrapper.ChatTracker.initialize

    def initialize(self, frame, box, text=None):
        original(self, frame, box, text)
        seen.append(self.descriptions[0])

    def no_rpo(*args, **kwargs):
        raise AssertionError("RPO ran although a pack was given")

    monkeypatch.setattr(chattracker.wrapper.ChatTracker, "initialize", initialize)
    monkeypatch.setattr(chattracker.rpo, "run_rpo", no_rpo)
    arguments = ["eval", "--dataset", "folder", "--root", str(shared_data / "sot_dev"), "--sequences", "OTB_Football1",
                 "--tracker", str(tracker), "--results", str(tmp_path / "results"), "--no-progress"]
    assert main(arguments + ["--descriptions", str(pack)]) == 0
    assert [(d.foreground, d.background) for d in seen] == [("white toy on the table", "hand. table")]
    assert len((tmp_path / "results" / "OTB_Football1.txt").read_text().splitlines()) == 74
    assert main(arguments[:6] + ["OTB_Toy"] + arguments[7:] + ["--descriptions", str(pack)]) == 2
    assert "no usable description for 1 sequence(s), e.g. OTB_Toy" in capsys.readouterr().err
    assert main(["eval", "--dataset", "folder", "--root", str(shared_data / "sot_dev"), "--sequences", "OTB_Football1",
                 "--tracker", "mil", "--results", str(tmp_path / "r2"), "--descriptions", str(pack)]) == 2
    assert "needs a ChatTracker tracker" in capsys.readouterr().err


def test_round_batcher_sends_each_round_as_one_batch_even_when_runs_end_early():
    import threading

    from chattracker.mllm.batch import RoundBatcher

    class Backend:
        def __init__(self):
            self.batches = []

        def _chat(self, prompt, image):
            raise AssertionError("a view must not call the backend one prompt at a time")

        def chat_batch(self, requests):
            self.batches.append(sorted(prompt for prompt, _ in requests))
            return [(f"reply to {prompt}", {"batch": len(requests)}) for prompt, _ in requests]

    backend = Backend()
    batcher = RoundBatcher(backend, runs=3)
    replies, infos = {}, {}

    def run(name, rounds):
        view = batcher.view()
        try:
            replies[name] = [view._chat(f"{name}{index}", None) for index in range(rounds)]
            infos[name] = view._last_info  # the facts of its own last batch
        finally:
            batcher.finished()

    threads = [threading.Thread(target=run, args=(name, rounds)) for name, rounds in (("a", 1), ("b", 2), ("c", 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert backend.batches == [["a0", "b0", "c0"], ["b1", "c1"], ["c2"]]
    assert replies == {"a": ["reply to a0"], "b": ["reply to b0", "reply to b1"],
                       "c": ["reply to c0", "reply to c1", "reply to c2"]}
    assert batcher.batches == [3, 2, 1]
    assert infos == {"a": {"batch": 3}, "b": {"batch": 2}, "c": {"batch": 1}}
