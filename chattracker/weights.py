"""Registry of named weight files and the lookup that finds them without surprises.

Lookup order: explicit path -> ``$CHATTRACKER_WEIGHTS`` (folders searched recursively for the
registered file name) -> the files bundled in the package (``chattracker/data/weights``) -> the user
cache dir -> download (unless offline). The sha256 is checked whatever the source: it tells
same-named files apart (NanoTrack v1 and v2), and a same-named file with other contents is reported
as rejected with its path, never used. Offline and missing gives one error naming the file, the URL,
the rejected files and how to supply it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import platformdirs

from chattracker.errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

ENV_WEIGHTS = "CHATTRACKER_WEIGHTS"
ENV_CACHE = "CHATTRACKER_CACHE"
ENV_OFFLINE = "CHATTRACKER_OFFLINE"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file: registry name, file name on disk, source URL, sha256 and size."""

    name: str
    filename: str
    url: str
    sha256: str
    size: int
    description: str = ""
    licence: str = ""
    derived: str = ""  # a file built here from another registered one: the command that builds it (no URL)


_REGISTRY: dict[str, WeightFile] = {}


def register_weight(weight: WeightFile) -> WeightFile:
    if weight.name in _REGISTRY and _REGISTRY[weight.name] != weight:
        raise ValueError(f"weight {weight.name!r} is registered twice with different contents")
    _REGISTRY[weight.name] = weight
    return weight


def registered_weights() -> list[WeightFile]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_weight(name: str) -> WeightFile:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise WeightsNotFoundError(
            f"unknown weight {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def cache_dir() -> Path:
    """Where downloaded weights live: ``$CHATTRACKER_CACHE`` or the platform's user cache dir."""
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else Path(platformdirs.user_cache_dir("chattracker")) / "weights"


def is_offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").lower() in {"1", "true", "yes"}


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@dataclass
class WeightLookup:
    """Where a registered file was found (``path`` None when nowhere) and every same-named file
    that was passed over because its contents are not the registered ones."""

    weight: WeightFile
    path: Path | None = None
    source: str = ""
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def rejected_text(self) -> str:
        return "; ".join(f"rejected {path} ({why})" for path, why in self.rejected)

    def faulty(self) -> list[tuple[Path, str]]:
        """Rejected files whose contents are no registered file (not merely a sibling version)."""
        return [(path, why) for path, why in self.rejected if not why.startswith("it is ")]


def _verdict(path: Path, weight: WeightFile) -> str | None:
    """None when ``path`` holds exactly ``weight``; otherwise why it does not."""
    digest = sha256_of(path)
    if digest == weight.sha256:
        return None
    other = next((w.name for w in _REGISTRY.values() if w.sha256 == digest), None)
    if other is not None:
        return f"it is {other}"
    return f"sha256 {digest[:12]}..., expected {weight.sha256[:12]}..."


def _search_folder(folder: Path, weight: WeightFile, lookup: WeightLookup) -> Path | None:
    """The first file named like ``weight`` under ``folder`` with its sha256; others go to ``rejected``."""
    if not folder.is_dir():
        return None
    for candidate in sorted(folder.rglob(weight.filename)):
        if not candidate.is_file():
            continue
        why = _verdict(candidate, weight)
        if why is None:
            return candidate
        lookup.rejected.append((candidate, why))
    return None


def bundled_dir() -> Path:
    """The weights that ship inside the package (``chattracker/data/weights``)."""
    return Path(__file__).resolve().parent / "data" / "weights"


def lookup_weight(name: str, path: str | os.PathLike[str] | None = None) -> WeightLookup:
    """Locate a registered file without downloading. Order: explicit path, ``$CHATTRACKER_WEIGHTS``,
    bundled, cache. Every candidate's sha256 is checked, whatever its source."""
    weight = get_weight(name)
    lookup = WeightLookup(weight)
    if path is not None:
        explicit = Path(path)
        if explicit.is_dir():
            lookup.path = _search_folder(explicit, weight, lookup)
            lookup.source = "explicit folder" if lookup.path else ""
            if lookup.path is None:
                raise WeightsNotFoundError(_missing_message(lookup, f"not in the folder {explicit}"))
            return lookup
        if not explicit.is_file():
            raise WeightsNotFoundError(f"weight file {explicit} for {name!r} does not exist")
        why = _verdict(explicit, weight)
        if why is not None:
            origin = f"built by {weight.derived}" if weight.derived else f"from {weight.url}"
            raise WeightsNotFoundError(f"weight file {explicit} for {name!r} rejected: {why} "
                                       f"(the registered {weight.filename} {origin})")
        lookup.path, lookup.source = explicit, "explicit path"
        return lookup
    folders: list[tuple[Path, str]] = [(folder, f"${ENV_WEIGHTS}") for folder in env_folders()]
    folders += [(bundled_dir(), "bundled"), (cache_dir() / weight.name, "cache")]
    for folder, source in folders:
        found = _search_folder(folder, weight, lookup)
        if found is not None:
            lookup.path, lookup.source = found, source
            break
    for rejected, why in lookup.faulty():  # a sibling version (NanoTrack v1 beside v2) is not a fault
        logger.warning("weight %s: rejected %s (%s)", name, rejected, why)
    return lookup


def env_folders() -> list[Path]:
    """The folders ``$CHATTRACKER_WEIGHTS`` names; one that is missing is an error (a typo there would
    otherwise be ignored without a word and the files looked for elsewhere)."""
    folders = [Path(f) for f in os.environ.get(ENV_WEIGHTS, "").split(os.pathsep) if f]
    for folder in folders:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise WeightsNotFoundError(f"${ENV_WEIGHTS} names {folder}, which {what}; point it at the folder "
                                       f"holding the weight files, or unset it")
    return folders


def find_weight(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """Locate a registered file without downloading: ``(path or None, where it was found)``."""
    lookup = lookup_weight(name, path)
    return lookup.path, lookup.source


_RECORDERS: list[dict[str, WeightLookup]] = []


@contextmanager
def recording() -> Iterator[dict[str, WeightLookup]]:
    """Collect every weight resolved inside the block (name -> lookup), so a run can say where
    each file of each component came from."""
    used: dict[str, WeightLookup] = {}
    _RECORDERS.append(used)
    try:
        yield used
    finally:
        _RECORDERS.remove(used)


def _record(lookup: WeightLookup) -> None:
    for used in _RECORDERS:
        used[lookup.weight.name] = lookup


def resolve_weight(name: str, path: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Path of a registered weight file, downloading it into the cache when allowed."""
    lookup = lookup_weight(name, path)
    if lookup.path is None:
        if not download or is_offline():
            raise WeightsNotFoundError(_missing_message(lookup))
        lookup.path, lookup.source = download_weight(name), "download"
    _record(lookup)
    return lookup.path


def _missing_message(lookup: WeightLookup, reason: str = "") -> str:
    weight = lookup.weight
    details = [reason] if reason else []
    if lookup.rejected:
        details.append(lookup.rejected_text())
    why = f" ({'; '.join(details)})" if details else ""
    # A same-named file with other contents is the likelier fault (a damaged copy), so say that first.
    verdict = "rejected, no copy has the registered sha256" if lookup.faulty() else "not found"
    if weight.derived:
        return (f"weight file {weight.filename!r} ({weight.name}) {verdict}{why}; it ships inside the package "
                f"(sha256 {weight.sha256[:12]}...) and is built by `{weight.derived}`")
    return (
        f"weight file {weight.filename!r} ({weight.name}) {verdict}{why}; download it from {weight.url} "
        f"(sha256 {weight.sha256[:12]}...) and pass its path, or put it in a folder named by ${ENV_WEIGHTS}, "
        f"or run `chattracker weights download {weight.name}` with network access"
    )


def download_weight(name: str, timeout: float = 60.0) -> Path:
    """Download into the cache dir, verify size and sha256, then move into place atomically."""
    weight = get_weight(name)
    if weight.derived:
        raise WeightsNotFoundError(f"weight file {weight.filename!r} ({weight.name}) is built, not downloaded: "
                                   f"{weight.derived}")
    target = cache_dir() / weight.name / weight.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s", weight.filename, weight.url)
    fd, tmp = tempfile.mkstemp(prefix=f".{weight.filename}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(weight.url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        got = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        if got != weight.sha256:
            raise WeightsNotFoundError(
                f"downloaded {weight.filename} has sha256 {got[:12]}..., expected {weight.sha256[:12]}...; not used"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise WeightsNotFoundError(_missing_message(WeightLookup(weight), f"download failed: {error}")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


_SIAMTRACKERS = "https://raw.githubusercontent.com/HonglinChu/SiamTrackers/248663fde6bf7c40190cf10ee396d5662919ecd3/NanoTrack/models"
_MOBILENETV2 = ("https://raw.githubusercontent.com/Lawrence-lugs/MARP/ac0452b4bd7f24639dfd0b2445f42a14d2be2ba7/"
                "onnx_models/mobilenetv2-12-int8.onnx")
_OSNET = ("https://raw.githubusercontent.com/HuyAIHub/PPE_Detection/2feee103d8501905a501f7411229b1cb511aaae4/"
          "weights/osnet_x0_25_msmt17.onnx")
_YOLOX = (
    "https://raw.githubusercontent.com/Kazuhito00/MOT-Tracking-by-Detection-Pipeline/"
    "e50a76b8b430b778276e7fd04fd4cafd5d45eab2/Detector/yolox/model/yolox_nano_416x416.onnx"
)

for _weight in (
    WeightFile("nanotrack_v1_backbone", "nanotrack_backbone_sim.onnx", f"{_SIAMTRACKERS}/nanotrackv1/nanotrack_backbone_sim.onnx",
               "f6fdf311bdc846510c2f9f0b2b8159c7e0cf5d80ed18c9079faeb32db460cba9", 767819, "NanoTrack v1 backbone (cv2.TrackerNano)", "Apache-2.0"),
    WeightFile("nanotrack_v1_head", "nanotrack_head_sim.onnx", f"{_SIAMTRACKERS}/nanotrackv1/nanotrack_head_sim.onnx",
               "4c987e5121cc400b6175f2168c30c84857864fe36d5e7a14df0c27e8e5b9540d", 392202, "NanoTrack v1 neck+head", "Apache-2.0"),
    WeightFile("nanotrack_v2_backbone", "nanotrack_backbone_sim.onnx", f"{_SIAMTRACKERS}/nanotrackv2/nanotrack_backbone_sim.onnx",
               "530bdd0cd00f19afab79a863e71ba71e3312395a5dc9151af675082bdaaa2fc4", 1056849, "NanoTrack v2 backbone (cv2.TrackerNano)", "Apache-2.0"),
    WeightFile("nanotrack_v2_head", "nanotrack_head_sim.onnx", f"{_SIAMTRACKERS}/nanotrackv2/nanotrack_head_sim.onnx",
               "0d8c0637be849f092cc7236cae02e55c8b9455ebe37ba50601d6115db4247cd9", 726198, "NanoTrack v2 neck+head", "Apache-2.0"),
    WeightFile("yolox_nano_coco", "yolox_nano_416x416.onnx", _YOLOX,
               "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14", 3660092, "YOLOX-Nano COCO-80 detector, 416x416", "Apache-2.0"),
    WeightFile("mobilenetv2_imagenet", "mobilenetv2-12-int8.onnx", _MOBILENETV2,
               "83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f", 3655640,
               "MobileNetV2 ImageNet-1k int8 (appearance embedding)", "Apache-2.0"),
    WeightFile("osnet_reid", "osnet_x0_25_msmt17.onnx", _OSNET,
               "c61799fb79be8959f950590604c6d7a097c7c0aac7aca2baa49b09406ecb5829", 854581,
               "OSNet x0.25 MSMT17 person re-identification (appearance embedding)", "MIT"),
    WeightFile("osnet_reid_int8", "osnet_x0_25_msmt17_int8.onnx", "",
               "c1b0f17e3defed30abea667c33a7e5396f063f4744aa955dfd1678d988458e41", 557767,
               "OSNet x0.25 MSMT17, static int8 (the appearance embedding for people)", "MIT",
               derived="uv run python bench/quantize_osnet.py --out chattracker/data/weights/osnet_reid/"
                       "osnet_x0_25_msmt17_int8.onnx (from osnet_reid, calibrated on the development set's tune half)"),
):
    register_weight(_weight)
