"""`chattracker serve`: the browser UI: upload a video or give a stream URL, draw the target, and watch the
base tracker and ChatTracker side by side."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from chattracker.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="web UI: draw the target on the first frame, watch base and ChatTracker side by side",
        description="Serve one web page (FastAPI + uvicorn) where a video is uploaded or a stream URL given, the "
                    "target's box drawn with the mouse or found from a sentence, and the base tracker and ChatTracker "
                    "run side by side; results (boxes, track.json, annotated mp4) can be downloaded. Listens on "
                    "127.0.0.1 unless --host says otherwise. Each browser tab is a session with its own temporary "
                    "folder, removed when the tab closes, after --idle-minutes, or when the server stops.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest video upload in MB (default 200)")
    parser.add_argument("--max-duration", type=float, default=120.0, metavar="SECONDS",
                        help="longest video accepted, and longest a stream is tracked (default 120)")
    parser.add_argument("--max-running", type=int, default=2, help="runs going on at once, all sessions together (default 2)")
    parser.add_argument("--max-sessions", type=int, default=16, help="sessions held at once (default 16)")
    parser.add_argument("--idle-minutes", type=float, default=30.0, help="remove a session untouched this long (default 30)")
    parser.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="a stream with no frame for this long ends its run with a message (default 10)")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The warning printed when the server is reachable from other machines."""
    if is_loopback(host):
        return None
    return (f"chattracker: warning: --host {host} is not a loopback address: anyone who can reach this machine on "
            f"port {port} can upload videos, run trackers and make the server open stream URLs")


def run(args: argparse.Namespace) -> int:
    from chattracker.web.sessions import Limits

    for name, value in (("--max-upload-mb", args.max_upload_mb), ("--max-duration", args.max_duration),
                        ("--idle-minutes", args.idle_minutes), ("--stall-timeout", args.stall_timeout)):
        if not value > 0 or value == float("inf"):
            raise InputError(f"{name} must be a positive number, got {value}")
    if args.max_running < 1 or args.max_sessions < 1:
        raise InputError("--max-running and --max-sessions must be at least 1")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be within 0..65535, got {args.port}")
    check_port(args.host, args.port)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_seconds=args.max_duration,
                    max_running=args.max_running, max_sessions=args.max_sessions,
                    idle_seconds=args.idle_minutes * 60, stall_timeout=args.stall_timeout)
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    import uvicorn

    from chattracker.web.app import create_app

    app = create_app(limits)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"chattracker serve: http://{shown}:{args.port}/ (Ctrl-C stops; session folders under "
          f"{app.state.manager.root})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3)
    return 0


def check_port(host: str, port: int) -> None:
    """A taken port or an address not of this machine is one line, before anything else starts."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {(error.strerror or str(error)).lower()}") from None
