"""The generated reference pages of the documentation site: the CLI from the argparse parsers, the
configuration from the settings' declarations (``describe_settings``). ``docs/hooks.py`` calls these at
build time, and ``tests/test_docs.py`` checks that every option and key has its entry."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from chattracker.config import describe_settings

EXAMPLES_FILE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli-examples.yaml"


# ---- CLI -------------------------------------------------------------------------------------------------------
def commands(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every (sub)command: (words after ``chattracker``, its parser, its one-line help), depth first."""
    if parser is None:
        from chattracker.cli import build_parser

        parser = build_parser()
        yield (), parser, parser.description or ""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name, "")
                yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The documented arguments of one parser (positionals and options; not --help, not sub-command lists)."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.help != argparse.SUPPRESS]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _argument_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest}`"
    names = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:
        return names
    return f"{names} `{action.metavar or action.dest.upper()}`"


def _argument_help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": "chattracker"}
    extra = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        extra.append("choices: " + ", ".join(f"`{c}`" for c in action.choices))
    if action.required and action.option_strings:
        extra.append("required")
    if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
        extra.append(f"default: `{action.default}`")
    if isinstance(action, argparse._AppendAction):
        extra.append("may be repeated")
    return _cell("; ".join(x for x in [text, *extra] if x))


def cli_markdown() -> str:
    """The CLI reference: every sub-command with its description, usage, arguments and examples."""
    examples = yaml.safe_load(EXAMPLES_FILE.read_text(encoding="utf-8")) or {}
    out: list[str] = []
    for path, parser, summary in commands():
        name = " ".join(("chattracker", *path))
        out += [f"## `{name}`" if path else "## `chattracker` (global options)", ""]
        if path and summary:
            out += [summary[:1].upper() + summary[1:] + ".", ""]
        if path and parser.description:
            out += [parser.description, ""]
        usage = parser.format_usage().replace("usage: ", "", 1).strip()
        out += ["```text", usage, "```", ""]
        arguments = options(parser)
        if arguments:
            out += ["| argument | what it does |", "|---|---|"]
            out += [f"| {_argument_name(a)} | {_argument_help(a)} |" for a in arguments]
            out.append("")
        lines = examples.get(" ".join(path)) if path else None
        if lines:
            out += ["Examples:", "", "```bash", *lines, "```", ""]
    return "\n".join(out)


# ---- configuration ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigSection:
    """One table of the configuration reference: where its keys go in a YAML file and the declaration."""

    title: str
    where: str
    target: Any
    keys: frozenset[str] | None = None  # only these names (a class with fields that are not YAML keys)


def config_sections() -> list[ConfigSection]:
    """The settings a user writes, in the order a config file has them; backends as registered."""
    from chattracker.config import TRACKER_CONFIG_KEYS, TrackerConfig
    from chattracker.grounding.base import GROUNDERS
    from chattracker.language_start import LanguageStartConfig
    from chattracker.mllm.base import DESCRIBERS
    from chattracker.rpo import RPOConfig
    from chattracker.wrapper import FusionConfig

    sections = [ConfigSection("Tracker config (top level)", "top level of a tracker YAML file", TrackerConfig,
                              frozenset(TRACKER_CONFIG_KEYS))]
    sections += _with_nested(ConfigSection("Fusion", "`chattracker:`", FusionConfig))
    sections.append(ConfigSection("RPO", "`chattracker: {rpo: {...}}`", RPOConfig))
    sections.append(ConfigSection("Language start", "`language_start:`", LanguageStartConfig))
    for kind, registry, where in (("Describer", DESCRIBERS, "describer_params"),
                                  ("Grounder", GROUNDERS, "grounder_params")):
        for name in registry.names():
            target = _built_class(registry._factories[name])
            sections.append(ConfigSection(f"{kind} `{name}`", f"`{where}:` when `{kind.lower()}: {name}`", target))
    return sections


def _with_nested(section: ConfigSection) -> list[ConfigSection]:
    """A dataclass whose field is itself a settings dataclass takes that one's keys side by side (as
    ``FusionConfig`` does with its verification settings): one more table, same place in the file."""
    nested = [f for f in dataclasses.fields(section.target)
              if dataclasses.is_dataclass(typing.get_type_hints(section.target).get(f.name))]
    own = frozenset(f.name for f in dataclasses.fields(section.target) if f.init) - {f.name for f in nested}
    out = [dataclasses.replace(section, keys=own)]
    for f in nested:
        target = typing.get_type_hints(section.target)[f.name]
        out.append(ConfigSection(f"{section.title}: {f.name}", f"{section.where} (side by side with the keys above)",
                                 target))
    return out


def _built_class(factory: Callable[..., Any]) -> Any:
    """The class a registry factory builds (its return annotation), else the factory itself."""
    try:
        built = typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that cannot be resolved: document the factory's own parameters
        built = None
    return built if isinstance(built, type) else factory


def config_keys(section: ConfigSection) -> list[str]:
    return [info.name for info in describe_settings(section.target)
            if section.keys is None or info.name in section.keys]


def field_comments(target: Any) -> dict[str, str]:
    """The comment beside each field or parameter in the source, with the comment lines right under it: the
    fallback 'why' of a setting that declares no ``Why(...)`` yet."""
    function = target.__init__ if isinstance(target, type) and not dataclasses.is_dataclass(target) else target
    try:
        source = inspect.getsource(function)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError, SyntaxError):
        return {}
    comment_at = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    names = {info.name for info in describe_settings(target)}
    comments: dict[str, list[str]] = {}
    current = None
    for row, line in enumerate(source.splitlines(), start=1):
        head = line.strip().split(":")[0].split("=")[0].strip()
        if head in names and row in comment_at:
            current = head
            comments[current] = [comment_at[row]]
        elif current is not None and line.strip().startswith("#"):
            comments[current].append(comment_at.get(row, ""))
        else:
            current = None
    return {name: " ".join(parts) for name, parts in comments.items()}


def _default_text(value: Any) -> str:
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    return f"`{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`" \
        if isinstance(value, (bool, int, float, str, list, dict, type(None))) else f"`{value!r}`"


def config_markdown() -> str:
    """The configuration reference: one table per section, a row per key."""
    out: list[str] = []
    for section in config_sections():
        comments = field_comments(section.target)
        out += [f"## {section.title}", "", f"Where: {section.where}. Declared in "
                f"`{section.target.__module__}.{section.target.__qualname__}`.", "",
                "| key | type | range | default | why |", "|---|---|---|---|---|"]
        for info in describe_settings(section.target):
            if section.keys is not None and info.name not in section.keys:
                continue
            why = info.why or (f"*{comments[info.name]}* (code comment)" if comments.get(info.name) else "")
            out.append(f"| `{info.name}` | {_cell(info.type_text)} | {_cell(info.range_text or '')} | "
                       f"{_cell(_default_text(info.default))} | {_cell(why)} |")
        out.append("")
    return "\n".join(out)
