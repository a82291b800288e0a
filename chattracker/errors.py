"""Exceptions that the CLI turns into one clear line and exit code 2."""


class ChatTrackerError(Exception):
    """Base class: a user-facing problem (bad input, missing file, bad config)."""


class InputError(ChatTrackerError):
    """Bad user input: unreadable video, box outside the frame, malformed file."""


class ConfigError(ChatTrackerError):
    """A configuration file or value that does not validate."""


class WeightsNotFoundError(ChatTrackerError):
    """A registered weight file is neither supplied nor downloadable."""
