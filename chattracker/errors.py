"""Exceptions that the CLI turns into one clear line and exit code 2."""

import re

# C0/C1 control characters except tab (ESC starts terminal escape sequences; newlines would break "one line").
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """Untrusted text (model replies, file contents) safe for a terminal: control characters shown as
    ``\\x1b`` or ``\\n`` instead of acting."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))


class ChatTrackerError(Exception):
    """Base class: a user-facing problem (bad input, missing file, bad config)."""


class InputError(ChatTrackerError):
    """Bad user input: unreadable video, box outside the frame, malformed file."""


class ConfigError(ChatTrackerError):
    """A configuration file or value that does not validate."""


class WeightsNotFoundError(ChatTrackerError):
    """A registered weight file is neither supplied nor downloadable."""
