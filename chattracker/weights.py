"""Registry of named weight files and the lookup that finds them without surprises.

Lookup order (DESIGN.md section 3): explicit path -> ``$CHATTRACKER_WEIGHTS`` (a folder searched
recursively for the registered file name; the sha256 decides between same-named files, e.g.
NanoTrack v1 and v2) -> the user cache dir -> download (unless offline). Offline and missing gives
one error naming the file, the URL and how to supply it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


def _matches(path: Path, weight: WeightFile) -> bool:
    return path.is_file() and path.stat().st_size == weight.size and sha256_of(path) == weight.sha256


def _search_folder(folder: Path, weight: WeightFile) -> Path | None:
    if not folder.is_dir():
        return None
    for candidate in sorted(folder.rglob(weight.filename)):
        if _matches(candidate, weight):
            return candidate
    return None


def find_weight(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """Locate a registered file without downloading: ``(path or None, where it was found)``."""
    weight = get_weight(name)
    if path is not None:
        explicit = Path(path)
        if explicit.is_dir():
            found = _search_folder(explicit, weight)
            return (found, "explicit folder") if found else (None, "")
        if not explicit.is_file():
            raise WeightsNotFoundError(f"weight file {explicit} for {name!r} does not exist")
        if sha256_of(explicit) != weight.sha256:
            logger.warning("%s does not have the registered sha256 of %r; using it as given", explicit, name)
        return explicit, "explicit path"
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        for folder in env.split(os.pathsep):
            found = _search_folder(Path(folder), weight)
            if found:
                return found, f"${ENV_WEIGHTS}"
    cached = cache_dir() / weight.name / weight.filename
    if _matches(cached, weight):
        return cached, "cache"
    return None, ""


def resolve_weight(name: str, path: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Path of a registered weight file, downloading it into the cache when allowed."""
    found, _ = find_weight(name, path)
    if found is not None:
        return found
    weight = get_weight(name)
    if download and not is_offline():
        return download_weight(name)
    raise WeightsNotFoundError(_missing_message(weight))


def _missing_message(weight: WeightFile, reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"weight file {weight.filename!r} ({weight.name}) not found{why}; download it from {weight.url} "
        f"(sha256 {weight.sha256[:12]}...) and pass its path, or put it in a folder named by ${ENV_WEIGHTS}, "
        f"or run `chattracker weights download {weight.name}` with network access"
    )


def download_weight(name: str, timeout: float = 60.0) -> Path:
    """Download into the cache dir, verify size and sha256, then move into place atomically."""
    weight = get_weight(name)
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
        raise WeightsNotFoundError(_missing_message(weight, f"download failed: {error}")) from None
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
):
    register_weight(_weight)
