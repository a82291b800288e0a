"""Converting checkpoints (fused and per-expert layouts) into a store; damaged stores fail loudly."""

import json

import pytest
import torch

from chattracker.cli import main
from chattracker.offload import ExpertStore, ExpertStoreError, convert_checkpoint, load_offloaded_model
from chattracker.offload.quant import QuantSpec, dequantize
from chattracker.offload.store import aligned_buffer
from chattracker.offload.testing import save_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload_store")
    return {kind: save_tiny_model(kind, root / kind, with_tokenizer=False) for kind in ("qwen3_vl_moe", "mixtral")}


@pytest.mark.parametrize("kind", ["qwen3_vl_moe", "mixtral"])  # fused [E, 2I, H] tensors / one module per expert
def test_store_holds_each_expert_quantized(models, tmp_path, kind):
    from safetensors import safe_open

    manifest_path = convert_checkpoint(models[kind], tmp_path / "store", bits=8, group_size=32)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["moe_layers"] == [0, 1] and manifest["num_experts"] == 8
    assert manifest["convert"]["peak_rss_bytes"] > 0
    store = ExpertStore(tmp_path / "store")
    tensors = store.parse(store.read(1, 5))
    gate_up = dequantize(tensors["gate_up"], QuantSpec.make(8, 32), store.shapes["gate_up"])
    with safe_open(models[kind] / "model.safetensors", "pt") as handle:
        if kind == "mixtral":
            prefix = "model.layers.1.block_sparse_moe.experts.5."
            original = torch.cat([handle.get_tensor(prefix + "w1.weight"), handle.get_tensor(prefix + "w3.weight")])
        else:
            original = handle.get_tensor("model.language_model.layers.1.mlp.experts.gate_up_proj")[5]
    assert torch.allclose(gate_up, original, atol=float(original.abs().max()) / 100)


def test_corrupt_or_missing_expert_file_is_an_error_naming_it(models, tmp_path):
    convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    store = ExpertStore(tmp_path / "store")
    for expert in range(8):  # every expert of layer 1, so whichever the router picks is damaged
        damaged = store.path(1, expert)
        data = bytearray(damaged.read_bytes())
        data[100] ^= 0xFF
        damaged.write_bytes(bytes(data))
    with pytest.raises(ExpertStoreError, match=r"layer001/expert0000\.bin is corrupt"):  # preloading everything
        load_offloaded_model(models["mixtral"], tmp_path / "store", expert_budget=1.0, method="resident")
    model, engine = load_offloaded_model(models["mixtral"], tmp_path / "store", expert_budget=0.5, method="lod")
    try:
        with pytest.raises(ExpertStoreError, match=r"layer001/expert000\d\.bin is corrupt"):
            model.generate(torch.arange(2, 14)[None], max_new_tokens=4, do_sample=False)
    finally:
        engine.close()
    store.path(0, 2).unlink()
    with pytest.raises(ExpertStoreError, match=r"expert0002\.bin cannot be opened"):
        store.read(0, 2)


def test_store_from_another_model_or_missing_is_rejected(models, tmp_path):
    with pytest.raises(ExpertStoreError, match="no expert store"):
        ExpertStore(tmp_path / "nothing")
    convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    with pytest.raises(ExpertStoreError, match="converted from another model"):
        load_offloaded_model(models["qwen3_vl_moe"], tmp_path / "store", expert_budget=1.0)


def test_cli_convert_and_info(models, tmp_path, capsys):
    assert main(["offload", "convert", str(models["mixtral"]), str(tmp_path / "s"), "--bits", "2"]) == 0
    assert "peak RSS" in capsys.readouterr().out
    assert main(["offload", "info", str(tmp_path / "s")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["quantization"]["bits"] == 2 and info["quantization"]["group"] == 32
    assert main(["offload", "info", str(tmp_path / "missing")]) == 2
    assert "no expert store" in capsys.readouterr().err


def _supports_o_direct(folder) -> bool:
    import os

    probe = folder / "probe"
    probe.write_bytes(b"\0" * 4096)
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.mark.parametrize("direct", [True, False])
def test_reads_bypass_the_page_cache_either_way_and_give_the_same_bytes(models, tmp_path, monkeypatch, direct):
    """Protects the read mode: with O_DIRECT where the file system has it, every expert file is opened with the
    flag; buffered reads (direct=False, or a file system without O_DIRECT) drop the file's pages after each read."""
    import os

    from chattracker.offload import store as store_module

    convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    store = ExpertStore(tmp_path / "store", direct=direct)
    expect_direct = direct and _supports_o_direct(tmp_path)
    opened, dropped, real_open, real_fadvise = [], [], os.open, os.posix_fadvise
    monkeypatch.setattr(store_module.os, "open", lambda path, flags, *a: opened.append(flags) or real_open(path, flags, *a))
    monkeypatch.setattr(store_module.os, "posix_fadvise",
                        lambda fd, offset, length, advice: dropped.append((offset, length, advice)) or
                        real_fadvise(fd, offset, length, advice))
    view = store.read(1, 3)
    slot = aligned_buffer(store.slot_bytes)
    assert len(store.read_into(1, 3, slot)) == store.expert_bytes and bytes(slot[:16]) == bytes(view[:16])
    assert bytes(view) == store.path(1, 3).read_bytes()
    if expect_direct:
        assert store.read_mode == "O_DIRECT"
        assert len(opened) == 2 and all(flags & os.O_DIRECT for flags in opened)
        assert dropped == []  # nothing went through the page cache, nothing to drop
    else:
        assert store.read_mode == "buffered + POSIX_FADV_DONTNEED"
        assert len(opened) == 2 and not any(flags & os.O_DIRECT for flags in opened)
        assert dropped == [(0, 0, os.POSIX_FADV_DONTNEED)] * 2  # every read drops the whole file's pages
    with pytest.raises(ValueError, match="cannot hold"):
        store.read_into(1, 3, aligned_buffer(1)[:16])


def test_a_file_system_without_o_direct_falls_back_to_buffered_reads_that_drop_pages(models, tmp_path, monkeypatch):
    import errno
    import os

    from chattracker.offload import store as store_module

    convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    store = ExpertStore(tmp_path / "store")
    real_open, real_fadvise, dropped = os.open, os.posix_fadvise, []

    def no_direct(path, flags, *args):  # what tmpfs answers
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(store_module.os, "open", no_direct)
    monkeypatch.setattr(store_module.os, "posix_fadvise",
                        lambda fd, offset, length, advice: dropped.append(advice) or real_fadvise(fd, offset, length, advice))
    assert bytes(store.read(0, 1)) == store.path(0, 1).read_bytes()
    assert store.read_mode == "buffered + POSIX_FADV_DONTNEED" and dropped == [os.POSIX_FADV_DONTNEED]


def test_verify_first_checks_each_file_once_always_checks_every_read(models, tmp_path):
    convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    first, always = ExpertStore(tmp_path / "store"), ExpertStore(tmp_path / "store", verify="always")
    first.read(0, 1), always.read(0, 1)
    damaged = first.path(0, 1)
    data = bytearray(damaged.read_bytes())
    data[7] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert bytes(first.read(0, 1)) == bytes(data)  # verified once already: only the size is checked again
    with pytest.raises(ExpertStoreError, match=r"expert0001\.bin is corrupt"):
        always.read(0, 1)
    with pytest.raises(ExpertStoreError, match=r"expert0001\.bin is corrupt"):
        ExpertStore(tmp_path / "store").read(0, 1)  # a new process (store) checks it on its first read
    damaged.write_bytes(bytes(data[:-5]))
    with pytest.raises(ExpertStoreError, match=r"expert0001\.bin has the wrong size"):
        first.read(0, 1)
    with pytest.raises(ValueError, match="verify"):
        ExpertStore(tmp_path / "store", verify="never")


def test_cli_generate_rejects_a_negative_prefill_chunk(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["offload", "generate", "model", "store", "--prompt", "x", "--prefill-chunk", "-1"])
    assert exit_info.value.code == 2 and "number of tokens >= 0" in capsys.readouterr().err


def test_malformed_manifest_is_a_clear_error(models, tmp_path):
    manifest = convert_checkpoint(models["mixtral"], tmp_path / "store", bits=4, group_size=32)
    data = json.loads(manifest.read_text())
    del data["tables"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(ExpertStoreError, match=r"malformed store manifest \(KeyError: 'tables'\)"):
        ExpertStore(tmp_path / "store")
