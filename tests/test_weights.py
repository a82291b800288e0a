import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from chattracker import weights
from chattracker.errors import WeightsNotFoundError
from chattracker.weights import WeightFile, find_weight, register_weight, resolve_weight


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    monkeypatch.setenv("CHATTRACKER_OFFLINE", "1")


def test_env_folder_search_tells_v1_from_v2_by_sha(shared_data, monkeypatch):
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(shared_data))
    v1, where = find_weight("nanotrack_v1_backbone")
    v2, _ = find_weight("nanotrack_v2_backbone")
    assert where == "$CHATTRACKER_WEIGHTS"
    assert v1.name == v2.name == "nanotrack_backbone_sim.onnx"
    assert v1.parent.name == "v1" and v2.parent.name == "v2"
    assert resolve_weight("yolox_nano_coco").name == "yolox_nano_416x416.onnx"


def test_missing_offline_error_names_file_url_and_remedy():
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weight("nanotrack_v2_head")
    message = str(info.value)
    assert "nanotrack_head_sim.onnx" in message
    assert weights.get_weight("nanotrack_v2_head").url in message
    assert "CHATTRACKER_WEIGHTS" in message and "\n" not in message


def test_explicit_path_wins_and_missing_path_is_an_error(tmp_path):
    file = tmp_path / "my_head.onnx"
    file.write_bytes(b"not the registered file")
    assert resolve_weight("nanotrack_v2_head", file) == file
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weight("nanotrack_v2_head", tmp_path / "nope.onnx")


def test_unknown_name_lists_known():
    with pytest.raises(WeightsNotFoundError, match="nanotrack_v2_head"):
        resolve_weight("no_such_model")


def _serve(folder: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_into_cache_verifies_sha(tmp_path, monkeypatch):
    monkeypatch.delenv("CHATTRACKER_OFFLINE")
    served = tmp_path / "served"
    served.mkdir()
    payload = b"weights" * 100
    (served / "w.bin").write_bytes(payload)
    (served / "bad.bin").write_bytes(b"tampered")
    server = _serve(served)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        good = register_weight(WeightFile("test_good", "w.bin", f"{base}/w.bin", hashlib.sha256(payload).hexdigest(), len(payload)))
        path = resolve_weight(good.name)
        assert path.read_bytes() == payload and find_weight(good.name)[1] == "cache"
        bad = register_weight(WeightFile("test_bad", "bad.bin", f"{base}/bad.bin", hashlib.sha256(payload).hexdigest(), 8))
        with pytest.raises(WeightsNotFoundError, match="sha256"):
            resolve_weight(bad.name)
        assert not list((weights.cache_dir() / "test_bad").glob("*"))
        gone = register_weight(WeightFile("test_gone", "x.bin", f"{base}/missing.bin", "0" * 64, 1))
        with pytest.raises(WeightsNotFoundError, match="download failed"):
            resolve_weight(gone.name)
    finally:
        server.shutdown()
