"""The on-disk expert store: one quantized file per (layer, expert) plus ``manifest.json``.

Every expert file of a store has the same tensor table (name -> offset, dtype, shape), kept once in the manifest;
each file has its own size and CRC32 so a truncated or corrupted file is caught before it reaches a matmul.
A store may also hold a *cold* tier: every expert again at fewer bits (``cold/``, INT2 by default), which Fate reads
for the least-demanded experts of a prefill to save bandwidth.

Reads bypass the OS page cache, so repeated loads cost a real storage read, as they would for a model larger than
RAM: with ``O_DIRECT`` where the file system allows it (storage DMAs straight into the caller's page-aligned buffer,
no kernel copy: about a fifth of the CPU time of a buffered read on a 2-core machine), otherwise a buffered read
followed by ``posix_fadvise(POSIX_FADV_DONTNEED)``. ``read_mode`` says which one is in use.
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from chattracker.errors import ChatTrackerError
from chattracker.offload.quant import QuantSpec, int4_layout_fingerprint

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ALIGN = max(4096, mmap.PAGESIZE)  # O_DIRECT wants buffer address, length and file offset aligned to the device block size
VERIFY_MODES = ("first", "always")
FORMAT_VERSION = 1
_DTYPES = {"uint8": torch.uint8, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_DROP_PAGES = hasattr(os, "posix_fadvise")
_O_DIRECT = getattr(os, "O_DIRECT", 0)


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


def expert_file(layer: int, expert: int, cold: bool = False) -> str:
    """Relative path of one expert's file (in the cold tier with ``cold``)."""
    return f"{'cold' if cold else 'experts'}/layer{layer:03d}/expert{expert:04d}.bin"


def drop_pages(fd: int) -> None:
    """Evict a file's pages from the page cache so the next read goes to storage."""
    if _DROP_PAGES:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def align_up(size: int) -> int:
    """``size`` rounded up to a multiple of ``ALIGN``."""
    return -(-size // ALIGN) * ALIGN


def aligned_buffer(size: int) -> memoryview:
    """A zero-filled, page-aligned, writable private buffer of at least ``size`` bytes (rounded up to ``ALIGN``).

    An anonymous mapping: its pages cost memory only once written, and it goes back to the OS whole when freed.
    Where the OS offers transparent huge pages it is asked for them: an O_DIRECT read pins and maps 2 MiB pages
    instead of 4 KiB ones, which halved the time to read a 2.6 MB expert on our test machine (4.0 -> 2.0 ms)."""
    size = max(ALIGN, align_up(size))
    if not hasattr(mmap, "MAP_ANONYMOUS"):
        return memoryview(mmap.mmap(-1, size))
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            memory.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # kernel without transparent huge pages: 4 KiB pages work, only slower
            pass
    return memoryview(memory)


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


@dataclass(frozen=True)
class Tier:
    """One precision of a store's experts: quantization, the shared tensor table, and each file's size and CRC32."""

    cold: bool
    spec: QuantSpec
    tables: dict[str, dict[str, TensorEntry]]
    expert_bytes: int
    entries: dict[str, dict]

    @classmethod
    def from_manifest(cls, section: dict, cold: bool) -> "Tier":
        quant = section["quantization"]
        tables = {name: {key: TensorEntry(v["offset"], v["dtype"], tuple(v["shape"])) for key, v in table.items()}
                  for name, table in section["tables"].items()}
        return cls(cold, QuantSpec.make(quant["bits"], quant["group"]), tables, section["expert_bytes"],
                   section["experts"])


class ExpertStore:
    """Read access to a converted store.

    ``verify``: "first" checks a file's CRC32 the first time this process reads it (corruption at rest is caught
    before any use, and re-reads of a verified file skip the ~1 ms/2.6 MB checksum); "always" checks every read.
    The size is checked on every read.
    """

    def __init__(self, store_dir: str | os.PathLike, verify: str = "first", direct: bool = True) -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.root = Path(store_dir)
        self.verify = verify
        self._direct = bool(direct and _O_DIRECT)
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        path = self.root / MANIFEST
        if not path.is_file():
            raise ExpertStoreError(f"no expert store at {self.root} (missing {MANIFEST}); run `chattracker offload convert`")
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ExpertStoreError(f"unreadable store manifest {path}: {error}") from error
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ExpertStoreError(f"{path}: unsupported store format {self.manifest.get('format_version')!r}")
        try:
            sections = [self.manifest] + ([self.manifest["cold"]] if self.manifest.get("cold") else [])
            for section in sections:
                quant = section["quantization"]
                if quant["bits"] == 4 and quant.get("int4_layout") != int4_layout_fingerprint():
                    raise ExpertStoreError(f"{path}: INT4 data was packed by a torch build with another CPU layout; "
                                           "re-run `chattracker offload convert` here")
            self.main = Tier.from_manifest(self.manifest, cold=False)
            self.cold = Tier.from_manifest(self.manifest["cold"], cold=True) if len(sections) > 1 else None
            self.layers: list[int] = list(self.manifest["moe_layers"])
            self.num_experts: int = self.manifest["num_experts"]
            self.shapes = {name: tuple(shape) for name, shape in self.manifest["shapes"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ExpertStoreError(f"{path}: malformed store manifest ({type(error).__name__}: {error}); "
                                   "re-run `chattracker offload convert`") from error
        self.spec, self.tables, self.expert_bytes = self.main.spec, self.main.tables, self.main.expert_bytes

    @property
    def total_bytes(self) -> int:
        return self.expert_bytes * self.num_experts * len(self.layers)

    @property
    def slot_bytes(self) -> int:
        """Memory one expert takes in the cache: its file size rounded up to the O_DIRECT alignment."""
        return align_up(self.expert_bytes)

    @property
    def read_mode(self) -> str:
        return "O_DIRECT" if self._direct else "buffered + POSIX_FADV_DONTNEED"

    def path(self, layer: int, expert: int, cold: bool = False) -> Path:
        return self.root / expert_file(layer, expert, cold)

    def tier(self, cold: bool) -> Tier:
        if not cold:
            return self.main
        if self.cold is None:
            raise ExpertStoreError(f"store {self.root} has no cold tier; convert it with `--cold-bits 2`")
        return self.cold

    def read(self, layer: int, expert: int, cold: bool = False) -> memoryview:
        """Read and verify one expert file into a fresh buffer (the engine reads into its cache slots instead)."""
        return self.read_into(layer, expert, aligned_buffer(self.slot_bytes), cold)

    def read_into(self, layer: int, expert: int, buffer: memoryview, cold: bool = False) -> memoryview:
        """Read and verify one expert file (of the cold tier with ``cold``) into ``buffer`` (page-aligned, at least
        ``slot_bytes``); returns the part holding the file. The page cache keeps nothing of it afterwards."""
        key = f"{layer}.{expert}"
        entry = self.tier(cold).entries.get(key)
        path = self.path(layer, expert, cold)
        if entry is None:
            raise ExpertStoreError(f"{self.root / MANIFEST} has no entry for layer {layer} expert {expert}"
                                   + (" in its cold tier" if cold else ""))
        size = entry["bytes"]
        if len(buffer) < align_up(size):
            raise ValueError(f"buffer of {len(buffer)} bytes cannot hold {path} ({size} bytes, aligned)")
        fd = self._open(path)
        try:
            if os.fstat(fd).st_size != size:
                raise ExpertStoreError(f"expert file {path} has the wrong size (manifest says {size} bytes)")
            got = 0
            while got < size:
                count = os.preadv(fd, [buffer[got:]], got)
                if count == 0:
                    break
                got += count
            if not self._direct:
                drop_pages(fd)
        finally:
            os.close(fd)
        if got != size:
            raise ExpertStoreError(f"expert file {path} has the wrong size (read {got} of {size} bytes)")
        view = buffer[:size]
        if self.verify == "always" or str(path) not in self._verified:
            if zlib.crc32(view) != entry["crc32"]:
                raise ExpertStoreError(f"expert file {path} is corrupt (CRC32 mismatch)")
            with self._lock:
                self._verified.add(str(path))
        return view

    def _open(self, path: Path) -> int:
        if self._direct:
            try:
                return os.open(path, os.O_RDONLY | _O_DIRECT)
            except OSError as error:
                if error.errno != errno.EINVAL:  # this file system has no O_DIRECT (tmpfs, some overlays)
                    raise ExpertStoreError(f"expert file {path} cannot be opened: {error.strerror}") from error
                with self._lock:
                    if self._direct:
                        log.info("%s does not support O_DIRECT; reading buffered and dropping pages", self.root)
                    self._direct = False
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as error:
            raise ExpertStoreError(f"expert file {path} cannot be opened: {error.strerror}") from error

    def parse(self, buffer: memoryview, cold: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Zero-copy tensor views over a file's bytes: {"gate_up": {...}, "down": {...}}."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for matrix, table in self.tier(cold).tables.items():
            out[matrix] = {}
            for name, entry in table.items():
                flat = torch.frombuffer(buffer, dtype=torch.uint8, count=entry.nbytes, offset=entry.offset)
                out[matrix][name] = flat.view(_DTYPES[entry.dtype]).reshape(entry.shape)
        return out
