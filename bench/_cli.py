"""What every benchmark script ends with: the JSON report printed (and written atomically), and bad input
as one ``bench: error: ...`` line with exit status 2, nothing written."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from chattracker.errors import ChatTrackerError
from chattracker.results import atomic_write_text


def emit_report(report: dict[str, Any], path: str | None) -> None:
    """Print ``report`` as JSON after the table, and write it to ``path`` (when given) in one step."""
    text = json.dumps(report, indent=1, default=float)
    if path:
        atomic_write_text(path, text + "\n")
    print(text)


def run_main(main: Callable[[], int]) -> None:
    try:
        sys.exit(main())
    except (ChatTrackerError, OSError) as error:  # bad input: one line, exit 2, nothing written
        print(f"bench: error: {error}", file=sys.stderr)
        sys.exit(2)
