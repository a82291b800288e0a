"""`chattracker trax`: serve a tracker over the TraX protocol, so the VOT toolkit runs it unchanged."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from chattracker.errors import InputError
from chattracker.run_record import add_choice_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trax", help="serve a tracker to the VOT toolkit over the TraX protocol",
        description="Speaks TraX on stdin/stdout (or the socket in $TRAX_SOCKET) until the client quits. Put it in "
                    "the toolkit's trackers.ini as `command = chattracker trax --config FILE` with protocol = trax. "
                    "The tracker is built once; every initialisation request starts a new sequence.")
    add_choice_arguments(parser)  # as `track`: ChatTracker around NanoTrack v2 unless told otherwise
    parser.add_argument("--config", help="YAML tracker config (tracker, params, enhance, chattracker); "
                                         "--tracker, --plain and --enhance override it")
    parser.add_argument("--log", help="also write ChatTracker's log to this file (the toolkit keeps a tracker's "
                                      "output only in debug mode); -v / -vv set the level")
    parser.add_argument("--trax-log", help="file for libtrax's protocol log (debugging an integration)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="with $TRAX_SOCKET: seconds to keep trying to reach the client (default 30)")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output into --log (-vv for debug); also accepted before `trax`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chattracker.commands.track import build_from_args
    from chattracker.toolkits.trax_server import serve

    if not (0 < args.connect_timeout <= 3600):
        raise InputError(f"--connect-timeout must be in (0, 3600] seconds, got {args.connect_timeout:g}")
    if args.log:
        handler = logging.FileHandler(args.log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    tracker = build_from_args(args)  # a bad name or config fails here, before the handshake
    # stdout carries the protocol: anything Python prints goes to stderr (the toolkit's tracker log).
    with contextlib.redirect_stdout(sys.stderr):
        serve(tracker, name=f"ChatTracker {tracker.name}", log=args.trax_log or False,
              connect_timeout=args.connect_timeout)
    return 0
