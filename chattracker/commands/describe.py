"""`chattracker describe`: RPO on one image and box; prints the descriptions, writes the trace and a
picture of each round's grounding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from chattracker.config import check_keys, load_yaml, naming_source
from chattracker.errors import ChatTrackerError, ConfigError, InputError, printable
from chattracker.commands.track import BOX_HELP
from chattracker.outputs import RunFolder, default_name, free_folder
from chattracker.results import atomic_write_bytes, write_json
from chattracker.types import Box, Frame
from chattracker.video import check_init_box, read_image

DEFAULT_DESCRIBER = "attributes"
DEFAULT_GROUNDER = "yolox"
CONFIG_KEYS = {"describer", "grounder", "rpo"}
POSITIVE_RGB, NEGATIVE_RGB, TARGET_RGB = (30, 144, 255), (255, 60, 60), (0, 255, 0)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe", help="describe a target by reflection (RPO): foreground and background descriptions",
        description="Run reflection-based prompt optimisation on one image: the describer writes a phrase for the "
                    "boxed target, the grounder finds it, positive/negative words go back to the describer. Writes "
                    "rpo.json (the whole trace) and round_<k>.png (each round's grounding) into --out.")
    parser.add_argument("image", nargs="?", help="image file (the first frame); or use --dataset")
    parser.add_argument("--box", help=BOX_HELP.replace("initial box on the first frame", "target box"))
    parser.add_argument("--dataset", help="describe every sequence of a benchmark instead (lasot, lasot_ext, tnl2k, otb, "
                        "otb99_lang, vot, folder): one description pack per sequence in --out, resumable")
    parser.add_argument("--root", help="with --dataset: the dataset root")
    parser.add_argument("--sequences", nargs="+", help="with --dataset: only these sequences")
    parser.add_argument("--split", choices=("test", "all"), help="with --dataset lasot/tnl2k: test list (default) or all")
    parser.add_argument("--parallel", type=int, default=None,
                        help="with --dataset: sequences advanced together, round by round (default: all of them)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="with --dataset: no attributes-describer fallback when the model gives nothing usable")
    parser.add_argument("--no-progress", action="store_true", help="with --dataset: no progress bar")
    parser.add_argument("--describer", help=f"describer name (default {DEFAULT_DESCRIBER}; also hf, openai)")
    parser.add_argument("--grounder", help=f"grounder name (default {DEFAULT_GROUNDER}; also hf)")
    parser.add_argument("--config", help="YAML with describer: {name, params}, grounder: {name, params}, rpo: {...}")
    parser.add_argument("--text", help="a description to start from (user's or dataset's, e.g. LaSOT nlp.txt)")
    parser.add_argument("--iterations", type=int, help="describer rounds at most, 1 or more (default 3)")
    parser.add_argument("--cache", help="folder of cached RPO results (same image, box, models, config: no new run)")
    parser.add_argument("--out", help="output folder (default runs/describe/<sequence>_<image name>, numbered when taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    parser.add_argument("--json", action="store_true",
                        help='print {"foreground", "background", "iterations": [{"description", "top1_iou"}]} only')
    parser.set_defaults(func=run)


def _component(settings: dict[str, Any], section: str, name: str | None, default: str) -> tuple[str, dict[str, Any]]:
    data = settings.get(section) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a mapping with name and params")
    check_keys(section, data, {"name", "params"})
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{section}.params: expected a mapping")
    chosen = name or data.get("name") or default
    if name and data.get("name") and name != data.get("name"):
        params = {}  # params of the config's component do not fit another one
    return chosen, dict(params)


def build_components(settings: dict[str, Any], describer: str | None = None, grounder: str | None = None,
                     source: str | None = None):
    """(describer, grounder, RPOConfig) from a settings mapping, names overridable; errors name ``source``
    (the --config file)."""
    from chattracker.grounding.base import build_grounder
    from chattracker.rpo import RPOConfig, build_describer_for

    with naming_source(source):
        check_keys("describe config", settings, CONFIG_KEYS)
        config = RPOConfig.from_dict(settings.get("rpo"))  # checked first: cheap; a typo should not wait for a model
        grounder_name, grounder_params = _component(settings, "grounder", grounder, DEFAULT_GROUNDER)
        describer_name, describer_params = _component(settings, "describer", describer, DEFAULT_DESCRIBER)
        grounder_object = build_grounder(grounder_name, **grounder_params)
        describer_object = build_describer_for(describer_name, grounder_object, **describer_params)
    return describer_object, grounder_object, config


def draw_round(image: Frame, box: Box, record: dict[str, Any]) -> np.ndarray:
    """BGR picture of one round: the target (green), positive (blue) and negative (red) boxes with word,
    score and IoU, and the description with its top-1 IoU on top. Small frames are enlarged so the
    labels stay readable."""
    zoom = max(1.0, 720 / max(image.shape[:2]))
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if zoom > 1.0:
        canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)

    def corners(values: list[float]) -> tuple[tuple[int, int], tuple[int, int]]:
        x, y, w, h = (v * zoom for v in values)
        return (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))

    p1, p2 = corners(box.to_list())
    cv2.rectangle(canvas, p1, p2, TARGET_RGB[::-1], 2, cv2.LINE_AA)
    for entry in reversed(record["grounding"]["boxes"]):  # best box drawn last, on top
        color = (POSITIVE_RGB if entry["positive"] else NEGATIVE_RGB)[::-1]
        p1, p2 = corners(entry["box"])
        cv2.rectangle(canvas, p1, p2, color, 2, cv2.LINE_AA)
        label = f"{entry['word'] or entry['label']} {entry['score']:.2f} IoU {entry['iou']:.2f}"
        _text(canvas, label[:48], (p1[0], max(14, p1[1] - 4)), color)
    title = f"round {record['round']} ({record['source']}): \"{record['description']['foreground']}\""
    _text(canvas, title[:90], (8, 22), (255, 255, 255))
    _text(canvas, f"top-1 IoU {record['top1_iou']:.2f}", (8, 44), (255, 255, 255))
    return canvas


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
    # A dark band behind the text: an outline drawn with a thicker stroke has wider glyph advances in
    # OpenCV's Hershey fonts and would not line up with the text.
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
    x, y = origin
    cv2.rectangle(canvas, (x - 2, y - height - 3), (x + width + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 1, cv2.LINE_AA)


def write_png(path: Path, picture_bgr: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", picture_bgr)
    if not ok:
        raise InputError(f"cannot encode {path.name}")
    atomic_write_bytes(path, encoded.tobytes())



def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_yaml(args.config) if args.config else {}
    if args.iterations is not None:
        settings["rpo"] = {**(settings.get("rpo") or {}), "iterations": args.iterations}
    return settings


def run(args: argparse.Namespace) -> int:
    from chattracker.rpo import RPOCache, run_rpo_cached

    if args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations must be at least 1 (describer rounds), got {args.iterations}")
    if args.parallel is not None and args.parallel < 1:
        raise InputError(f"--parallel must be at least 1 (sequences advanced together; leave it out for all), "
                         f"got {args.parallel}")
    if args.dataset:
        from chattracker.commands._describe_dataset import run_dataset

        return run_dataset(args, _settings(args))
    if not args.image or not args.box:
        raise InputError("give an image and --box (or --dataset, --root and --out)")
    image_path = Path(args.image)
    image = read_image(image_path)
    try:
        box = Box.parse(args.box)
    except ValueError as error:
        raise InputError(str(error)) from None
    box = check_init_box(box, image.shape[1], image.shape[0])
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise InputError(f"--cache {args.cache} is a file, not a folder")
    describer, grounder, config = build_components(_settings(args), args.describer, args.grounder, args.config)
    out = Path(args.out) if args.out else free_folder(Path("runs") / "describe", default_name(image_path))
    with RunFolder(out, "rpo.json", args.overwrite) as folder:
        cache = RPOCache(args.cache) if args.cache else None
        result = run_rpo_cached(cache, image, box, describer, grounder, config, args.text, sequence=image_path.stem)
        write_json(folder.staging / "rpo.json", {"image": str(image_path), **result.to_json()})
        for record in result.trace.get("rounds", []):
            if record.get("grounding"):
                write_png(folder.staging / f"round_{record['round']}.png", draw_round(image, box, record))
        folder.publish()
    if not result.ok:
        raise ChatTrackerError(f"no usable description after {len(result.trace.get('rounds', []))} round(s) "
                               f"({'; '.join(result.trace.get('errors', [])[-1:]) or 'no rounds'}); trace in {out / 'rpo.json'}")
    if args.json:
        # json.dumps escapes control characters already
        print(json.dumps({"foreground": result.description.foreground, "background": result.description.background,
                          "iterations": result.iterations}))
        return 0
    print(f"foreground: {printable(result.description.foreground)}")
    print(f"background: {printable(result.description.background)}")
    print(f"{'round':>5}  {'source':<12}  {'top-1 IoU':>9}  description")
    for record in result.trace["rounds"]:
        text = record["description"]["foreground"] if record.get("description") else f"(error: {record['error']})"
        iou = f"{record['top1_iou']:.2f}" if record.get("description") else "-"
        mark = "*" if record["round"] == result.trace.get("selected_round") else " "
        print(f"{record['round']:>4}{mark}  {record['source']:<12}  {iou:>9}  {printable(text)}")
    print(f"trace: {out / 'rpo.json'}; pictures: {out}/round_*.png")
    return 0
