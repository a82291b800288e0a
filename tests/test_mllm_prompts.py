"""Prompt files: their declared placeholders match the text, and rendering fails clearly."""

from __future__ import annotations

import pytest

from chattracker_prompts import PROMPTS_DIR, PromptError, load_prompt


@pytest.mark.parametrize("name", ["describe", "reflect", "background"])
def test_packaged_prompts_load_and_render(name):
    template = load_prompt(name)
    values = {p: f"<{p}>" for p in template.placeholders}
    rendered = template.render(**values)
    for placeholder in template.placeholders:
        assert f"<{placeholder}>" in rendered.system + rendered.user
    assert "{" in rendered.user and "{{" not in rendered.user  # the JSON example keeps single braces


def test_missing_and_unknown_values_fail_naming_them():
    template = load_prompt("describe")
    with pytest.raises(PromptError, match=r"'describe' .* needs color"):
        template.render(box="1, 2, 3, 4", width=10, height=10)
    with pytest.raises(PromptError, match="takes no colour"):
        template.render(box="1", width=1, height=1, color="green", colour="x")


def test_bad_files_fail_clearly(tmp_path):
    (tmp_path / "a.yaml").write_text("placeholders: [x]\nsystem: hi {x}\nuser: and {y}\n")
    with pytest.raises(PromptError, match=r"declared placeholders \['x'\] but the text uses \['x', 'y'\]"):
        load_prompt("a", tmp_path)
    (tmp_path / "b.yaml").write_text("system: hi\n")
    with pytest.raises(PromptError, match="needs text keys"):
        load_prompt("b", tmp_path)
    with pytest.raises(PromptError, match="does not exist"):
        load_prompt("nope", tmp_path)
    assert (PROMPTS_DIR / "describe.yaml").is_file()
