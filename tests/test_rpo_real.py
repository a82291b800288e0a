"""RPO with the embedded default (attributes describer + YOLOX-Nano grounder) on the first frames of
the real sequences: the final description grounds the target wherever YOLOX can see it at all, and
RPO never ends worse than its first description. Run with -s to see the table."""

from __future__ import annotations

import json

import pytest

from chattracker.rpo import RPOConfig, run_rpo
from chattracker.types import Box
from chattracker.video import list_images, read_image
from tests.conftest import REPO_ROOT
from tests.helpers import real_sequences

pytestmark = pytest.mark.shared
GROUNDED = 0.5  # top-1 IoU that counts as "the description finds the target"


@pytest.fixture(scope="module")
def components(weights_env):
    from chattracker.grounding.yolox import YoloxGrounder
    from chattracker.mllm.attributes import AttributesDescriber

    grounder = YoloxGrounder()
    return AttributesDescriber(grounder=grounder), grounder


def first_frame(sequence):
    return read_image(list_images(sequence.frames)[0]), Box.from_any(sequence.ground_truth[0])


def detector_sees(grounder, image, box) -> float:
    """Best IoU of any YOLOX detection with the target: below 0.5 no phrase can ground it."""
    found = grounder.detect(image)
    return max((found.box(i).iou(box) for i in range(len(found))), default=0.0)


def test_final_description_grounds_the_target_and_is_never_worse(shared_data, components):
    describer, grounder = components
    rows = []
    for name, sequence in real_sequences(shared_data).items():
        image, box = first_frame(sequence)
        result = run_rpo(image, box, describer, grounder, RPOConfig())
        first = result.iterations[0]
        rows.append((name, detector_sees(grounder, image, box), first, result))
    print("\n" + f"{'sequence':<11} {'YOLOX best':>10}  {'first description':<32} {'IoU':>5}  "
          f"{'final description':<32} {'IoU':>5}  rounds  background")
    for name, seen, first, result in rows:
        print(f"{name:<11} {seen:>10.2f}  {first['description']:<32} {first['top1_iou']:>5.2f}  "
              f"{result.description.foreground:<32} {result.top1_iou:>5.2f}  {len(result.trace['rounds']):>6}  "
              f"{result.description.background}")
    for name, seen, first, result in rows:
        assert result.ok and not result.trace["errors"], name
        assert result.top1_iou >= first["top1_iou"], f"{name}: RPO ended worse than its first description"
        if seen >= GROUNDED:
            assert result.top1_iou >= GROUNDED, f"{name}: YOLOX sees the target ({seen:.2f}) but the description misses it"
        json.dumps(result.trace)
    assert [name for name, seen, _, _ in rows if seen >= GROUNDED] == ["Crossing", "Woman", "bag"]
    # the describers page's table of this run is this run's output, figure for figure
    measured = [[name, f"{seen:.2f}", first["description"], f"{first['top1_iou']:.2f}", result.description.foreground,
                 f"{result.top1_iou:.2f}"] for name, seen, first, result in rows]
    assert readme_describe_table() == measured


def readme_describe_table() -> list[list[str]]:
    """Rows of the table under "| sequence | YOLOX best IoU | first description | ..." (docs/guide/describers.md)."""
    text = (REPO_ROOT / "docs" / "guide" / "describers.md").read_text()
    header = "| sequence | YOLOX best IoU | first description | IoU | final description | IoU |"
    assert header in text, "the describers page's describe table is gone"
    rows = []
    for line in text.split(header, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_dataset_language_as_initial_text(shared_data, components):
    """OTB Woman's language.txt and LaSOT airplane-1's nlp.txt start the loop; never worse than them."""
    describer, grounder = components
    sequences = real_sequences(shared_data)
    texts = {"Woman": shared_data / "otb_woman_lang/Woman/language.txt",
             "airplane-1": shared_data / "lasot_airplane-1_clip600/airplane/airplane-1/nlp.txt"}
    print()
    for name, path in texts.items():
        text = path.read_text().strip()
        image, box = first_frame(sequences[name])
        result = run_rpo(image, box, describer, grounder, RPOConfig(), initial_text=text)
        zero = result.trace["rounds"][0]
        assert zero["source"] == "initial_text" and zero["description"]["foreground"] == " ".join(text.split())
        assert result.trace["rounds"][1]["source"] == "describer"
        assert result.trace["rounds"][1]["feedback"]["initial_text"] == " ".join(text.split())
        assert result.top1_iou >= zero["top1_iou"]
        if detector_sees(grounder, image, box) >= GROUNDED:
            assert result.top1_iou >= GROUNDED
        print(f"{name:<11} text {text!r} IoU {zero['top1_iou']:.2f} -> {result.description.foreground!r} "
              f"IoU {result.top1_iou:.2f}, background {result.description.background!r}")


@pytest.mark.parametrize("name, wrong_text", [("Crossing", "person in red on the left"), ("Woman", "car")])
def test_wrong_human_text_is_repaired(shared_data, components, name, wrong_text):
    """A description that names another object grounds elsewhere; reflection on its negative words
    brings the target back (how RPO repairs wrong annotations)."""
    describer, grounder = components
    image, box = first_frame(real_sequences(shared_data)[name])
    result = run_rpo(image, box, describer, grounder, RPOConfig(), initial_text=wrong_text)
    zero, one = result.trace["rounds"][:2]
    assert zero["top1_iou"] < GROUNDED and zero["negative_words"]
    assert one["feedback"]["negative_words"] == zero["negative_words"]
    assert result.top1_iou >= GROUNDED and result.trace["selected_round"] >= 1
    print(f"\n{name}: {wrong_text!r} IoU {zero['top1_iou']:.2f} (negative words {zero['negative_words']}) -> "
          f"{result.description.foreground!r} IoU {result.top1_iou:.2f}")
