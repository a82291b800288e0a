"""The on-disk expert store: one quantized file per (layer, expert) plus ``manifest.json``.

Every expert file of a store has the same tensor table (name -> offset, dtype, shape), kept once in the manifest;
each file has its own size and CRC32 so a truncated or corrupted file is caught before it reaches a matmul.
Reads drop the file's pages from the OS page cache afterwards (``posix_fadvise(POSIX_FADV_DONTNEED)``) so repeated
loads cost a real storage read, as they would for a model larger than RAM.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from chattracker.errors import ChatTrackerError
from chattracker.offload.quant import QuantSpec, int4_layout_fingerprint

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_DTYPES = {"uint8": torch.uint8, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_DROP_PAGES = hasattr(os, "posix_fadvise")


class ExpertStoreError(ChatTrackerError):
    """A store that is missing, malformed, or does not match the model."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives inside every expert file."""

    offset: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * torch.empty((), dtype=_DTYPES[self.dtype]).element_size()


def expert_file(layer: int, expert: int) -> str:
    """Relative path of one expert's file."""
    return f"experts/layer{layer:03d}/expert{expert:04d}.bin"


def drop_pages(fd: int) -> None:
    """Evict a file's pages from the page cache so the next read goes to storage."""
    if _DROP_PAGES:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def serialize(tensors: dict[str, torch.Tensor]) -> tuple[bytes, dict[str, TensorEntry]]:
    """Concatenate tensors (64-byte aligned) into one payload and its table."""
    chunks, table, offset = [], {}, 0
    for name, tensor in tensors.items():
        raw = tensor.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
        pad = (-offset) % 64
        chunks.append(b"\0" * pad)
        offset += pad
        dtype = next(key for key, value in _DTYPES.items() if value == tensor.dtype)
        table[name] = TensorEntry(offset, dtype, tuple(tensor.shape))
        chunks.append(raw)
        offset += len(raw)
    return b"".join(chunks), table


class ExpertStore:
    """Read access to a converted store."""

    def __init__(self, store_dir: str | os.PathLike) -> None:
        self.root = Path(store_dir)
        path = self.root / MANIFEST
        if not path.is_file():
            raise ExpertStoreError(f"no expert store at {self.root} (missing {MANIFEST}); run `chattracker offload convert`")
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ExpertStoreError(f"unreadable store manifest {path}: {error}") from error
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ExpertStoreError(f"{path}: unsupported store format {self.manifest.get('format_version')!r}")
        quant = self.manifest["quantization"]
        self.spec = QuantSpec.make(quant["bits"], quant["group"])
        if self.spec.bits == 4 and quant.get("int4_layout") != int4_layout_fingerprint():
            raise ExpertStoreError(
                f"{path}: INT4 data was packed by a torch build with another CPU layout; re-run `chattracker offload convert` here")
        self.tables = {name: {key: TensorEntry(v["offset"], v["dtype"], tuple(v["shape"])) for key, v in table.items()}
                       for name, table in self.manifest["tables"].items()}
        self.layers: list[int] = list(self.manifest["moe_layers"])
        self.num_experts: int = self.manifest["num_experts"]
        self.expert_bytes: int = self.manifest["expert_bytes"]
        self.shapes = {name: tuple(shape) for name, shape in self.manifest["shapes"].items()}
        self._entries = self.manifest["experts"]

    @property
    def total_bytes(self) -> int:
        return self.expert_bytes * self.num_experts * len(self.layers)

    def path(self, layer: int, expert: int) -> Path:
        return self.root / expert_file(layer, expert)

    def read(self, layer: int, expert: int) -> bytearray:
        """Read and verify one expert file; the page cache keeps nothing of it afterwards."""
        key = f"{layer}.{expert}"
        entry = self._entries.get(key)
        path = self.path(layer, expert)
        if entry is None:
            raise ExpertStoreError(f"{self.root / MANIFEST} has no entry for layer {layer} expert {expert}")
        buffer = bytearray(entry["bytes"])
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise ExpertStoreError(f"expert file {path} cannot be opened: {error.strerror}") from error
        try:
            view, got = memoryview(buffer), 0
            while got < len(buffer):
                count = os.readv(fd, [view[got:]])
                if count == 0:
                    break
                got += count
            extra = os.read(fd, 1)
            drop_pages(fd)
        finally:
            os.close(fd)
        if got != len(buffer) or extra:
            raise ExpertStoreError(f"expert file {path} has the wrong size (manifest says {entry['bytes']} bytes)")
        if zlib.crc32(buffer) != entry["crc32"]:
            raise ExpertStoreError(f"expert file {path} is corrupt (CRC32 mismatch)")
        return buffer

    def parse(self, buffer: bytearray) -> dict[str, dict[str, torch.Tensor]]:
        """Zero-copy tensor views over a file's bytes: {"gate_up": {...}, "down": {...}}."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for matrix, table in self.tables.items():
            out[matrix] = {}
            for name, entry in table.items():
                flat = torch.frombuffer(buffer, dtype=torch.uint8, count=entry.nbytes, offset=entry.offset)
                out[matrix][name] = flat.view(_DTYPES[entry.dtype]).reshape(entry.shape)
        return out
