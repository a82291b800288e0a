"""`chattracker describe`: output shapes, files, errors; fake components registered for the test only,
and the embedded default (attributes + yolox) on a real frame."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from chattracker.cli import main
from chattracker.grounding.base import GROUNDERS
from chattracker.mllm.base import DESCRIBERS
from chattracker.mllm.errors import ReplyParseError
from tests.conftest import REPO_ROOT
from tests.helpers import real_sequences
from tests.test_rpo_fakes import SCENE, TARGET, ScriptedDescriber, WordGrounder, image

BOX = ",".join(str(int(v)) for v in TARGET.to_list())


@pytest.fixture
def frame_file(tmp_path) -> Path:
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(image(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def fakes(monkeypatch):
    """A word grounder and a scripted describer under test-only names (removed after the test)."""
    made: list[ScriptedDescriber] = []

    def describer(script=("blue person", "red person")):
        made.append(ScriptedDescriber([ReplyParseError("no usable description", reply=s[1:]) if s.startswith("!") else s
                                       for s in script]))
        return made[-1]

    monkeypatch.setitem(GROUNDERS._factories, "test_words", lambda: WordGrounder(SCENE))
    monkeypatch.setitem(DESCRIBERS._factories, "test_scripted", describer)
    return made


def describe(*args: str) -> int:
    return main(["describe", *args])


def test_json_output_trace_and_pictures(frame_file, tmp_path, fakes, capsys):
    out = tmp_path / "out"
    code = describe(str(frame_file), "--box", BOX, "--describer", "test_scripted", "--grounder", "test_words",
                    "--iterations", "2", "--out", str(out), "--json")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"foreground": "red person", "background": "tree. car",
                       "iterations": [{"description": "blue person", "top1_iou": 0.0},
                                      {"description": "red person", "top1_iou": 1.0}]}
    trace = json.loads((out / "rpo.json").read_text())
    assert trace["image"] == str(frame_file) and trace["trace"]["selected_round"] == 2
    for k in (1, 2):
        picture = cv2.imread(str(out / f"round_{k}.png"))
        assert picture.shape == (540, 720, 3)  # enlarged to 720 px for readable labels
    edge = picture[130:190, 111:115]  # the target's left edge at 720/640 scale, under the found box
    assert ((edge[..., 0] > 240) & (abs(edge[..., 1].astype(int) - 144) < 10)).sum() > 60  # positive: blue (BGR)


def test_text_start_and_table(frame_file, tmp_path, fakes, capsys):
    code = describe(str(frame_file), "--box", BOX, "--describer", "test_scripted", "--grounder", "test_words",
                    "--text", "blue person", "--iterations", "1", "--out", str(tmp_path / "o"))
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "foreground: blue person"  # the scripted describer repeats the wrong text: no better
    assert lines[3].split() == ["0*", "initial_text", "0.00", "blue", "person"]
    assert fakes[0].feedbacks[0].initial_text == "blue person"


def test_cache_means_no_second_ask(frame_file, tmp_path, fakes, capsys):
    args = [str(frame_file), "--box", BOX, "--describer", "test_scripted", "--grounder", "test_words",
            "--iterations", "2", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o"), "--json",
            "--overwrite"]
    assert describe(*args) == 0 and describe(*args) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first == second and len(fakes[0].feedbacks) == 2 and fakes[1].feedbacks == []


def test_nothing_usable_is_exit_2_with_the_trace(frame_file, tmp_path, fakes, capsys, monkeypatch):
    monkeypatch.setitem(DESCRIBERS._factories, "test_garbage", lambda: ScriptedDescriber(
        [ReplyParseError("no usable description in the model reply", reply="@@")] * 2))
    out = tmp_path / "o"
    code = describe(str(frame_file), "--box", BOX, "--describer", "test_garbage", "--grounder", "test_words",
                    "--iterations", "2", "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("chattracker: error: no usable description after 2 round(s)")
    assert err.count("\n") == 1 and (out / "rpo.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["missing.png", "--box", BOX], "does not exist"),
    (["{frame}", "--box", "1,2,3"], "x,y,w,h"),
    (["{frame}", "--box", "900,900,10,10"], "outside"),
    (["{frame}", "--box", BOX, "--describer", "nope", "--grounder", "test_words"], "unknown describer 'nope'"),
    (["{frame}", "--box", BOX, "--iterations", "-1"], "--iterations"),
])
def test_bad_input_is_one_line(frame_file, fakes, capsys, args, message):
    code = describe(*[a.replace("{frame}", str(frame_file)) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_config_file_and_unreachable_openai_server(frame_file, tmp_path, fakes, capsys):
    config = tmp_path / "describe.yaml"
    config.write_text("describer: {name: openai, params: {base_url: 'http://127.0.0.1:9/v1', retries: 0, timeout: 2}}\n"
                      "grounder: {name: test_words}\nrpo: {iterations: 2}\n")
    code = describe(str(frame_file), "--box", BOX, "--config", str(config), "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert code == 2 and "cannot connect" in err and "127.0.0.1:9" in err and err.count("\n") == 1
    config.write_text("rpo: {iterations: 2, positive: 0.5}\n")
    assert describe(str(frame_file), "--box", BOX, "--config", str(config)) == 2
    assert "unknown setting(s) positive" in capsys.readouterr().err


@pytest.mark.shared
def test_embedded_default_on_a_real_frame(shared_data, weights_env, tmp_path, capsys):
    crossing = real_sequences(shared_data)["Crossing"]
    box = ",".join(f"{v:g}" for v in crossing.ground_truth[0])
    code = describe(str(crossing.frames / "0001.jpg"), "--box", box, "--out", str(tmp_path / "o"), "--json")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    # the describers page's example output of this command, figure for figure
    assert printed["foreground"] == "person in black on the right" and printed["background"] == "person in orange on the left. fire hydrant"
    assert printed["iterations"][0] == {"description": "person in black on the right", "top1_iou": 0.6893}
    assert ('{"foreground": "person in black on the right", "background": "person in orange on the left. fire hydrant",\n'
            '#  "iterations": [{"description": "person in black on the right", "top1_iou": 0.6893}, ...]}'
            ) in (REPO_ROOT / "docs" / "guide" / "describers.md").read_text()
    trace = json.loads((tmp_path / "o" / "rpo.json").read_text())["trace"]
    assert trace["describer"]["name"] == "attributes" and trace["grounder"]["name"] == "yolox"


def test_shipped_config_validates():
    from chattracker.commands.describe import CONFIG_KEYS
    from chattracker.config import load_yaml
    from chattracker.rpo import RPOConfig
    settings = load_yaml(REPO_ROOT / "configs" / "describe.yaml")
    assert set(settings) == CONFIG_KEYS and RPOConfig.from_dict(settings["rpo"]) == RPOConfig()
