"""The documentation site builds strictly, and its generated references cover the code they describe.

The CLI and configuration pages are generated at build time (``docs/hooks.py`` -> ``chattracker/_docs.py``);
these tests fail when a sub-command, an option, a config key, a describer or a grounder has no entry there,
when an example on the CLI page no longer parses, or when the build warns (a broken link, a page missing
from the navigation).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from chattracker import _docs
from chattracker.config import describe_settings
from tests.conftest import REPO_ROOT


def every_option() -> list[tuple[str, str]]:
    """(command, option string or positional name) for every argument of every parser."""
    found = []
    for path, parser, _ in _docs.commands():
        for action in _docs.options(parser):
            for name in action.option_strings or [action.dest]:
                found.append((" ".join(("chattracker", *path)), name))
    return found


def test_cli_reference_has_every_command_and_option():
    page = _docs.cli_markdown()
    sections = re.split(r"^## ", page, flags=re.M)
    by_command = {section.splitlines()[0].strip("` ").removesuffix("` (global options)"): section
                  for section in sections[1:]}
    assert len(every_option()) > 50
    for command, name in every_option():
        section = by_command[command.removesuffix(" (global options)")]
        assert f"`{name}`" in section, f"{command} {name} has no entry on the CLI page"


def test_a_new_option_gets_its_entry(monkeypatch):
    """Generation, not copying: an option added to a parser appears on the page without editing it."""
    from chattracker import cli

    build = cli.build_parser

    def with_new_option():
        parser = build()
        track = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["track"]
        track.add_argument("--brand-new-option", help="added by the test")
        return parser

    monkeypatch.setattr(cli, "build_parser", with_new_option)
    assert "| `--brand-new-option` `BRAND_NEW_OPTION` | added by the test |" in _docs.cli_markdown()


def test_every_command_has_examples_that_parse():
    from chattracker.cli import build_parser

    examples = yaml.safe_load(_docs.EXAMPLES_FILE.read_text())
    commands = {" ".join(path) for path, _, _ in _docs.commands() if path}
    assert commands <= set(examples), f"sub-commands without examples: {sorted(commands - set(examples))}"
    assert set(examples) <= commands, f"examples of commands that do not exist: {sorted(set(examples) - commands)}"
    parser = build_parser()
    for command, lines in examples.items():
        for line in lines:
            words = shlex.split(os.path.expandvars(line.replace("${SLURM_ARRAY_TASK_ID}", "1")), comments=True)
            start = next(i for i, w in enumerate(words) if w.endswith("chattracker"))
            assert " ".join(words[start + 1:]).startswith(command), line
            try:
                parser.parse_args(words[start + 1:])
            except SystemExit as stop:
                pytest.fail(f"example does not parse (exit {stop.code}): {line}")


def test_configuration_reference_has_every_key():
    page = _docs.config_markdown()
    sections = _docs.config_sections()
    titles = [s.title for s in sections]
    from chattracker.grounding.base import GROUNDERS
    from chattracker.mllm.base import DESCRIBERS

    for name in DESCRIBERS.names():
        assert f"Describer `{name}`" in titles
    for name in GROUNDERS.names():
        assert f"Grounder `{name}`" in titles
    for section in sections:
        body = page.split(f"## {section.title}\n", 1)[1].split("\n## ", 1)[0]
        keys = _docs.config_keys(section)
        assert keys, section.title
        for key in keys:
            assert f"| `{key}` |" in body, f"{section.title}: {key} has no entry"


def test_every_fusion_key_a_config_accepts_is_documented():
    """The ``chattracker:`` section takes its own keys and its nested settings' keys side by side; the union
    of the generated Fusion tables is exactly what ``FusionConfig.from_dict`` accepts."""
    from chattracker.config import TRACKER_CONFIG_KEYS
    from chattracker.wrapper import FusionConfig

    documented = set()
    for section in _docs.config_sections():
        if section.title.startswith("Fusion"):
            documented |= set(_docs.config_keys(section))
        if section.title.startswith("Tracker config"):
            assert set(_docs.config_keys(section)) == set(TRACKER_CONFIG_KEYS)
    accepted = set()
    for field in dataclasses.fields(FusionConfig):
        nested = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(nested):
            accepted |= {info.name for info in describe_settings(type(nested))}
        else:
            accepted.add(field.name)
    assert documented == accepted


def test_readme_links_into_the_docs_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(links) > 15
    for link in links:
        assert (REPO_ROOT / link).is_file(), link


@pytest.mark.slow
def test_site_builds_strictly_with_the_generated_pages(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: the docs dependency group is missing (uv sync --group docs)")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    cli_page = (site / "reference" / "cli" / "index.html").read_text()
    for command, name in every_option():
        assert f"<code>{name}</code>" in cli_page, f"{command} {name}"
    config_page = (site / "reference" / "configuration" / "index.html").read_text()
    for section in _docs.config_sections():
        for key in _docs.config_keys(section):
            assert f"<code>{key}</code>" in config_page, f"{section.title}: {key}"
    assert "chattracker.wrapper.build_chattracker" in (site / "api" / "wrapper" / "index.html").read_text()
