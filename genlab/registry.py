"""One small name -> builder registry used by data sets, models, losses, methods and metrics."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from genlab.errors import ConfigError, GenlabError

T = TypeVar("T")


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """Return the choice nearest to `name` (for "did you mean" hints), or None."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


class Registry(Generic[T]):
    """Maps names to builders; refuses duplicates and explains unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a second registration of a name is an error."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Look `name` up; unknown names raise a GenlabError naming the nearest valid one."""
        if name not in self._items:
            hint = closest(name, self.names())
            did_you_mean = f" Did you mean {hint!r}?" if hint else ""
            raise GenlabError(
                f"Unknown {self.kind} {name!r}.{did_you_mean} "
                f"Available: {', '.join(self.names())}."
            )
        return self._items[name]

    def require(self, name: str, key: str, source: str) -> None:
        """Raise a ConfigError for config key `key` (in `source`) when its value `name` is not registered here."""
        if name not in self._items:
            hint = closest(name, self.names())
            raise ConfigError(f"Invalid configuration ({source}): '{key}' = {name!r} is not known"
                              + (f" — did you mean {hint!r}?" if hint else ".")
                              + f" Available: {', '.join(self.names())}.")

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
