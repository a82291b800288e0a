"""`chattracker weights`: list the known weight files, where each was found, and download on request."""

from __future__ import annotations

import argparse

from chattracker.errors import InputError
from chattracker.weights import (ENV_OFFLINE, ENV_WEIGHTS, bundled_dir, cache_dir, download_weight, get_weight, is_offline,
                                 lookup_weight,
                                 registered_weights)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="list known weight files and where they were found; download them",
        description=f"Lookup order: explicit path -> ${ENV_WEIGHTS} (folders searched recursively) -> bundled "
                    f"({bundled_dir()}) -> cache dir ({cache_dir()}) -> download. The sha256 is checked "
                    f"whatever the source; a same-named file with other contents is listed as rejected.")
    parser.add_argument("action", nargs="?", choices=("list", "download"), default="list")
    parser.add_argument("names", nargs="*", help="weight names to download (default: all missing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "download":
        names = args.names or [w.name for w in registered_weights() if lookup_weight(w.name).path is None]
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
    lookups = [lookup_weight(weight.name) for weight in registered_weights()]
    width = max(len(lookup.weight.name) for lookup in lookups)
    for lookup in lookups:
        weight = lookup.weight
        status = f"{lookup.source}: {lookup.path}" if lookup.path else "missing"
        print(f"{weight.name:<{width}}  {weight.size / 1e6:>5.1f} MB  {status}")
        for path, why in lookup.faulty():
            print(f"{'':<{width}}            rejected {path} ({why})")
        if lookup.path is None:
            print(f"{'':<{width}}            " + (f"built by {weight.derived}" if weight.derived else f"from {weight.url}"))
    return 0
