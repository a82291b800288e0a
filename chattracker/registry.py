"""Name -> factory registries: backends register themselves, configs and the CLI build them by name."""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, Iterable, TypeVar

from chattracker.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of one kind of backend (``kind`` names it in errors).

    ``builtin_modules`` are imported on first use so their ``@register`` decorators run.
    """

    def __init__(self, kind: str, builtin_modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._builtin_modules = tuple(builtin_modules)
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        # Marked loaded only once every module imported, so a broken backend keeps failing loudly
        # instead of leaving a silently empty registry behind.
        for module in self._builtin_modules:
            importlib.import_module(module)
        self._loaded = True

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._factories)

    def build(self, name: str, /, **params: Any) -> T:
        """Build a registered backend; unknown names and bad parameters raise ``ConfigError``."""
        self._load_builtins()
        if name not in self._factories:
            close = difflib.get_close_matches(name, self._factories, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; available: {', '.join(self.names())}")
        try:
            return self._factories[name](**params)
        except TypeError as error:
            raise ConfigError(f"bad parameters for {self.kind} {name!r}: {error}") from None
