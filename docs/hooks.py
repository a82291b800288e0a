"""mkdocs hook: the reference pages are generated at build time, so they cannot drift from the code.

A page holds a marker line where the generated part goes: ``<!-- generated: cli -->`` (the argparse
parsers) or ``<!-- generated: config -->`` (the settings' declarations); see chattracker/_docs.py."""

from chattracker import _docs

GENERATORS = {"<!-- generated: cli -->": _docs.cli_markdown, "<!-- generated: config -->": _docs.config_markdown}


def on_page_markdown(markdown, page, config, files, **kwargs):
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
