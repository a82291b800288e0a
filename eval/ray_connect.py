"""Connecting the driver to a Ray cluster the way ``ray start`` set it up, or saying in one line why not.

Ray 2.5x+ protects a cluster with a token when ``ray start`` finds one (``~/.ray/auth_token``, written by any
earlier local ``ray.init``) while ``RAY_AUTH_MODE`` is unset; a driver connecting to it does not look for the
token by the same rule, and fails after ~30 s of ``InvalidAuthToken`` lines. The driver here follows
``ray start``'s rule, and a refused token becomes one line saying what to set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from chattracker.errors import InputError

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_HELP = ("put the cluster's token (`ray get-auth-token` on its head node prints it) in ~/.ray/auth_token, or "
              "name it with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, and set RAY_AUTH_MODE=token")


def token_available() -> bool:
    """Where Ray itself looks for a token: ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(named).expanduser().is_file() if named else (Path.home() / ".ray" / "auth_token").is_file()


def follow_ray_start(ray: Any, address: str | None) -> None:
    """Token mode on for a driver joining an existing cluster when a token is at hand and no mode is set,
    as ``ray start`` decides for the cluster (a new local Ray decides for itself)."""
    if not (address or os.environ.get("RAY_ADDRESS")) or AUTH_MODE in os.environ or not token_available():
        return
    os.environ[AUTH_MODE] = "token"
    with contextlib.suppress(AttributeError, ImportError):  # Ray caches its config: read the mode again
        ray._raylet.Config.initialize("")


@contextlib.contextmanager
def held_stderr() -> Iterator[Callable[[], str]]:
    """Ray's C++ core writes its retries straight to file descriptor 2: hold them while connecting, so a
    failure is one line; the caller replays them when the connection worked."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", errors="replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def connect(ray: Any, address: str | None, env: dict[str, str]) -> None:
    """``ray.init`` to ``address`` (None: ``RAY_ADDRESS`` or a new local Ray) with ``env`` for the actors."""
    follow_ray_start(ray, address)
    where = address or "RAY_ADDRESS / a new local Ray"
    with held_stderr() as held:
        try:
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=False)
            failure = None
        except Exception as error:  # Ray raises ConnectionError, ValueError, RuntimeError, AuthenticationError ...
            failure = error
        said = held()
    if failure is None:
        sys.stderr.write(said)
        return
    if "InvalidAuthToken" in said or type(failure).__name__ == "AuthenticationError":
        raise InputError(f"the Ray cluster at {where} refused the connection for want of its authentication "
                         f"token: {TOKEN_HELP}") from None
    first = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise InputError(f"cannot connect to the Ray cluster at {where}: {first}") from None


def forwarded_env(prefixes: tuple[str, ...]) -> dict[str, str]:
    """The driver's settings the actors need, relative paths among them made absolute (actors run elsewhere)."""
    env = {}
    for key, value in os.environ.items():
        if key.startswith(prefixes):
            parts = value.split(os.pathsep)
            if all(part and os.path.exists(part) for part in parts):
                value = os.pathsep.join(os.path.abspath(part) for part in parts)
            env[key] = value
    return env
