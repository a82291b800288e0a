"""`chattracker weights`: list the known weight files, where each was found, and download on request."""

from __future__ import annotations

import argparse

from chattracker.errors import InputError
from chattracker.weights import (ENV_OFFLINE, ENV_WEIGHTS, cache_dir, download_weight, find_weight, get_weight, is_offline,
                                 registered_weights)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="list known weight files and where they were found; download them",
        description=f"Lookup order: explicit path -> ${ENV_WEIGHTS} (folders searched recursively, sha256 checked) "
                    f"-> cache dir ({cache_dir()}) -> download.")
    parser.add_argument("action", nargs="?", choices=("list", "download"), default="list")
    parser.add_argument("names", nargs="*", help="weight names to download (default: all missing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "download":
        names = args.names or [w.name for w in registered_weights() if find_weight(w.name)[0] is None]
        for name in names:
            get_weight(name)
        if names and is_offline():
            raise InputError(f"${ENV_OFFLINE} is set, so nothing is downloaded ({', '.join(names)}); "
                             f"unset it to download, or put the files in a folder named by ${ENV_WEIGHTS}")
        for name in names:
            print(f"{name}: {download_weight(name)}")
        if not names:
            print("all registered weights are present")
        return 0
    rows = []
    for weight in registered_weights():
        path, where = find_weight(weight.name)
        rows.append((weight.name, f"{weight.size / 1e6:.1f} MB", f"{where}: {path}" if path else "missing", weight.url))
    width = max(len(r[0]) for r in rows)
    for name, size, status, url in rows:
        print(f"{name:<{width}}  {size:>8}  {status}")
        if status == "missing":
            print(f"{'':<{width}}            from {url}")
    return 0
