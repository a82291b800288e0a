"""Shared fixtures. Real data lives in ``../shared/data`` (or ``$CHATTRACKER_SHARED_DATA``).

Tests that need it use the ``shared_data`` fixture: they skip with a reason when the folder is
absent, and fail instead when ``CHATTRACKER_REQUIRE_SHARED=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never download anything: registered weights come from CHATTRACKER_WEIGHTS or fail loudly.
os.environ.setdefault("CHATTRACKER_OFFLINE", "1")

# Tests never read or write the user's home (a Ray token, a weights cache or an RPO cache there would make
# results depend on the machine's history): the whole session, subprocesses included, gets a fresh one.
_HOME = tempfile.mkdtemp(prefix="chattracker-tests-home-")
os.environ["HOME"] = _HOME
for _variable in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CHATTRACKER_CACHE"):
    os.environ.pop(_variable, None)
atexit.register(shutil.rmtree, _HOME, True)


def shared_data_dir() -> Path:
    env = os.environ.get("CHATTRACKER_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        message = f"real data folder {path} is absent (set CHATTRACKER_SHARED_DATA)"
        if os.environ.get("CHATTRACKER_REQUIRE_SHARED") == "1":
            pytest.fail(message + " but CHATTRACKER_REQUIRE_SHARED=1 makes it mandatory")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def weights_env(shared_data: Path, monkeypatch_session) -> Path:
    """Point ``CHATTRACKER_WEIGHTS`` at the shared data so registered weights are found there."""
    monkeypatch_session.setenv("CHATTRACKER_WEIGHTS", str(shared_data))
    return shared_data


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
