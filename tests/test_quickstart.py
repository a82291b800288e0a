"""Every quick-start command of the README runs as written, on the shared data, in a fresh folder.

The commands are read from the README itself (its ``## Quick start`` section), so a command edited there is
the command tested here. ``uv run X`` is run as ``X`` with this environment's ``bin`` first on ``PATH``,
which is what ``uv run`` does in a synced clone; the folder is a copy of the clone's layout (links to its
files) with the shared data at ``../shared/data``, so outputs never land in the repository. The one
substitution: the describer example's server address becomes a local stand-in server's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
EXAMPLE_SERVER = "http://127.0.0.1:8080/v1"


def quick_start_blocks(language: str) -> dict[str, str]:
    """``### heading`` -> the code block(s) of that language under it, in the README's Quick start section."""
    start = README.index("\n## Quick start")
    end = README.index("\n## ", start + 1)
    blocks: dict[str, str] = {}
    for part in re.split(r"\n### ", README[start:end])[1:]:
        heading = part.splitlines()[0].strip()
        code = re.findall(rf"```{language}\n(.*?)```", part, flags=re.S)
        if code:
            blocks[heading] = "\n".join(code)
    return blocks


def test_quick_start_has_the_four_uses():
    headings = list(quick_start_blocks("bash")) + list(quick_start_blocks("python"))
    assert len(headings) == 4, headings
    for word in ("Track", "Wrap", "Evaluate", "Describe"):
        assert any(h.startswith(word) for h in headings), word


@pytest.fixture
def clone(tmp_path: Path, shared_data: Path) -> Path:
    """A folder laid out like a fresh clone (links to the repository's tracked top-level entries) with the
    shared data beside it."""
    folder = tmp_path / "chattracker"
    folder.mkdir()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in sorted({line.split("/")[0] for line in tracked.splitlines() if line}):
        (folder / name).symlink_to(REPO_ROOT / name)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data.resolve())
    return folder


def run_block(block: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    script = re.sub(r"^uv run ", "", block, flags=re.M)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "CHATTRACKER_OFFLINE": "1"}
    env.pop("CHATTRACKER_CACHE", None)
    env["CHATTRACKER_CACHE"] = str(cwd.parent / "cache")  # a fresh clone's user has an empty cache
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    return done


@pytest.mark.shared
@pytest.mark.slow
def test_track_commands_run_as_written(clone):
    block = quick_start_blocks("bash")["Track a video from a box or from a sentence"]
    done = run_block(block, clone)
    assert done.stdout.count("tracked 120 frames") == 3, done.stdout
    runs = sorted(p.name for p in (clone / "runs").iterdir())
    assert runs == ["Crossing", "Crossing-2", "Crossing-3"]  # numbered when taken
    for run in runs:
        assert len((clone / "runs" / run / "boxes.txt").read_text().splitlines()) == 120
    assert (clone / "runs" / "Crossing-2" / "start.json").is_file()  # the sentence found the target


@pytest.mark.shared
@pytest.mark.slow
def test_evaluate_and_score_commands_run_as_written(clone):
    block = quick_start_blocks("bash")["Evaluate on LaSOT or TNL2K, then score"]
    done = run_block(block, clone)
    table = [line.split() for line in done.stdout.splitlines() if line.startswith(("nanotrack ", "chattracker "))]
    assert [row[0] for row in table] == ["nanotrack", "chattracker"], done.stdout
    assert all(float(row[3]) > 50 for row in table), done.stdout  # AUC of both on airplane-1[:600]


@pytest.mark.shared
@pytest.mark.slow
def test_describe_command_runs_as_written_against_a_chat_server(clone):
    from tests.test_mllm_openai import ChatServer, completion

    heading = next(h for h in quick_start_blocks("bash") if h.startswith("Describe"))
    block = quick_start_blocks("bash")[heading]
    assert EXAMPLE_SERVER in block
    server = ChatServer()
    reply = completion('{"foreground": "man in black on the right", "background": ["person in orange on the left"]}')
    server.script = [("json", reply)] * 10
    try:
        done = run_block(block.replace(EXAMPLE_SERVER, server.url), clone)
    finally:
        server.close()
    assert server.requests and server.requests[0]["body"]["model"] == "qwen3-vl"
    assert "man in black on the right" in done.stdout
    assert (clone / "runs" / "describe" / "Crossing_0001" / "rpo.json").is_file()


def test_wrap_your_tracker_runs_as_written(tmp_path):
    (code,) = quick_start_blocks("python").values()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CHATTRACKER_OFFLINE": "1", "CHATTRACKER_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("Box(x="), done.stdout
