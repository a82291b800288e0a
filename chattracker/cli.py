"""`chattracker` command line: one sub-command per module in ``chattracker.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
import threading

from chattracker.errors import ChatTrackerError, printable

# Each module in ``chattracker.commands`` defines ``register(subparsers)`` which adds its parser with
# ``func=run``; adding a sub-command is adding a module. The main job comes first in ``--help``.
FIRST_COMMANDS = ("track", "demo")


def command_modules() -> list[str]:
    import chattracker.commands as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))
    names.sort(key=lambda name: (name not in FIRST_COMMANDS, FIRST_COMMANDS.index(name) if name in FIRST_COMMANDS else 0))
    return [f"chattracker.commands.{name}" for name in names]


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors already; keep the message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"chattracker: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chattracker", description="Language-aware visual object tracking.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in command_modules():
        importlib.import_module(module_name).register(subparsers)
    return parser


def describe_os_error(error: OSError) -> str:
    """``[Errno 13] Permission denied: 'x'`` -> ``x: permission denied``: the path and the cause, one line."""
    reason = error.strerror.lower() if error.strerror else (str(error) or type(error).__name__)
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so ``finally`` blocks remove staging folders."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live only there
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return int(args.func(args) or 0)
    except ChatTrackerError as error:
        print(f"chattracker: error: {printable(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a filesystem or network fault the command did not foresee: still one line
        print(f"chattracker: error: {printable(describe_os_error(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chattracker: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("chattracker: terminated", file=sys.stderr)
        return 143
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
