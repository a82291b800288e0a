import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from chattracker import weights
from chattracker.errors import WeightsNotFoundError
from chattracker.weights import WeightFile, find_weight, register_weight, resolve_weight

BUNDLED = weights.bundled_dir()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATTRACKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHATTRACKER_WEIGHTS", raising=False)
    monkeypatch.setenv("CHATTRACKER_OFFLINE", "1")
    monkeypatch.setattr(weights, "_REGISTRY", dict(weights._REGISTRY))  # test registrations stay here


@pytest.fixture
def no_bundled(monkeypatch, tmp_path):
    """Hide the bundled weights, as on an install without them."""
    empty = tmp_path / "no_bundled"
    empty.mkdir()
    monkeypatch.setattr(weights, "bundled_dir", lambda: empty)
    return empty


def test_env_folder_search_tells_v1_from_v2_by_sha(shared_data, monkeypatch):
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(shared_data))
    v1, where = find_weight("nanotrack_v1_backbone")
    v2, _ = find_weight("nanotrack_v2_backbone")
    assert where == "$CHATTRACKER_WEIGHTS"
    assert v1.name == v2.name == "nanotrack_backbone_sim.onnx"
    assert v1.parent.name == "v1" and v2.parent.name == "v2"
    assert resolve_weight("yolox_nano_coco").name == "yolox_nano_416x416.onnx"


def test_missing_offline_error_names_file_url_and_remedy(no_bundled):
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weight("nanotrack_v2_head")
    message = str(info.value)
    assert "nanotrack_head_sim.onnx" in message
    assert weights.get_weight("nanotrack_v2_head").url in message
    assert "CHATTRACKER_WEIGHTS" in message and "\n" not in message


def test_a_derived_weight_says_how_it_is_built_and_is_never_downloaded(no_bundled, monkeypatch):
    """The int8 OSNet is built here from the released file: missing, it names the command, not a URL."""
    weight = weights.get_weight("osnet_reid_int8")
    assert weight.derived.startswith("uv run python bench/quantize_osnet.py") and not weight.url
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weight("osnet_reid_int8")
    assert "bench/quantize_osnet.py" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.delenv("CHATTRACKER_OFFLINE")
    with pytest.raises(WeightsNotFoundError, match="is built, not downloaded"):
        weights.download_weight("osnet_reid_int8")


def test_explicit_path_wins_and_is_checked(tmp_path):
    file = tmp_path / "my_head.onnx"
    file.write_bytes((BUNDLED / "nanotrack_v2/nanotrack_head_sim.onnx").read_bytes())
    assert find_weight("nanotrack_v2_head", file) == (file, "explicit path")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weight("nanotrack_v2_head", tmp_path / "nope.onnx")
    bad = tmp_path / "bad_head.onnx"
    bad.write_bytes(b"not the registered file")
    with pytest.raises(WeightsNotFoundError, match=f"weight file {bad} for 'nanotrack_v2_head' rejected: sha256"):
        resolve_weight("nanotrack_v2_head", bad)


def test_every_registered_weight_is_bundled_with_its_licence():
    """A fresh install with no network and no environment variables finds every file in the package."""
    for weight in weights.registered_weights():
        lookup = weights.lookup_weight(weight.name)
        assert lookup.source == "bundled" and lookup.path.stat().st_size == weight.size, weight.name
        assert (lookup.path.parent / "LICENSE").is_file()
    total = sum(w.size for w in weights.registered_weights())
    assert 10e6 < total < 12e6  # the ~11 MB the README states


def test_same_named_file_with_other_contents_is_rejected_with_its_path(tmp_path, monkeypatch, no_bundled, caplog):
    folder = tmp_path / "mine"
    folder.mkdir()
    fake = folder / "yolox_nano_416x416.onnx"
    fake.write_bytes(b"truncated download")
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(folder))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weight("yolox_nano_coco")
    assert f"rejected {fake} (sha256" in str(info.value) and "not found" not in str(info.value)
    assert f"rejected {fake}" in caplog.text  # also logged when a later source would have served


def test_sibling_version_is_named_not_blamed(tmp_path, monkeypatch, no_bundled, caplog):
    folder = tmp_path / "v1only"
    folder.mkdir()
    (folder / "nanotrack_backbone_sim.onnx").write_bytes((BUNDLED / "nanotrack_v1/nanotrack_backbone_sim.onnx").read_bytes())
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(folder))
    with pytest.raises(WeightsNotFoundError, match=r"not found \(rejected .* \(it is nanotrack_v1_backbone\)\)"):
        resolve_weight("nanotrack_v2_backbone")
    assert "rejected" not in caplog.text  # not logged as a fault: it is a registered file, just another one


def test_corrupt_bundled_file_is_rejected(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled" / "osnet_reid"
    bundled.mkdir(parents=True)
    (bundled / "osnet_x0_25_msmt17.onnx").write_bytes(b"\0" * 854581)
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path / "bundled")
    lookup = weights.lookup_weight("osnet_reid")
    assert lookup.path is None and lookup.rejected[0][0] == bundled / "osnet_x0_25_msmt17.onnx"


def test_recording_says_where_each_weight_came_from(shared_data, monkeypatch):
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(shared_data / "yolox_nano_coco"))
    with weights.recording() as used:
        resolve_weight("yolox_nano_coco")
        resolve_weight("nanotrack_v2_head")
    assert {name: lookup.source for name, lookup in used.items()} == {
        "yolox_nano_coco": "$CHATTRACKER_WEIGHTS", "nanotrack_v2_head": "bundled"}


def test_weights_command_shows_bundled_and_rejected(tmp_path, monkeypatch, capsys):
    from chattracker.cli import main

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "osnet_x0_25_msmt17.onnx").write_bytes(b"old export")
    monkeypatch.setenv("CHATTRACKER_WEIGHTS", str(folder))
    assert main(["weights"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("bundled: ") == len(weights.registered_weights())
    assert f"rejected {folder / 'osnet_x0_25_msmt17.onnx'} (sha256" in printed


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
