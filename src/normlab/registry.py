"""One shape for every registry: datasets, norms, models and probes.

A ``Registry`` maps a name to ``(factory, one-line description)``. A factory's *options* are its
parameters that have a default, minus the arguments every factory of that registry takes
(``common``: ``data_dir``/``normalize`` for datasets, ``rngs`` for norms). Unknown names and
unknown options are one-line ``UnknownNameError`` s listing what is valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from normlab.errors import UnknownNameError, check_name

T = TypeVar("T")


class Registry(Generic[T]):
    """``kind`` names the registry in messages ("dataset", "norm", "model", "probe")."""

    def __init__(self, kind: str, entries: Mapping[str, tuple[Callable[..., T], str]], *, common=()):
        self.kind = kind
        self.common = tuple(common)
        self._entries = dict(entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def descriptions(self) -> dict[str, str]:
        return {name: description for name, (_factory, description) in self._entries.items()}

    def factory(self, name: str) -> Callable[..., T]:
        return self._entries[check_name(self.kind, name, self._entries)][0]

    def options(self, name: str) -> dict[str, Any]:
        """The options ``name`` accepts and their defaults, e.g. ``{"momentum": 0.99}``."""
        factory = self.factory(name)
        # A class's own __init__: a metaclass (nnx.Module's) may hide it from signature(cls).
        parameters = inspect.signature(factory.__init__ if inspect.isclass(factory) else factory).parameters.values()
        return {p.name: p.default for p in parameters
                if p.default is not inspect.Parameter.empty and p.name not in self.common}

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise ``UnknownNameError`` for the first option ``name`` does not accept."""
        valid = self.options(name)
        for option in sorted(options):
            if option not in valid:
                raise UnknownNameError(f"{self.kind} {name!r} option", option, list(valid) or ["(none)"])

    def build(self, name: str, *args, **options) -> T:
        """``factory(*args, **options)`` after checking the name and the options."""
        self.check_options(name, {k: v for k, v in options.items() if k not in self.common})
        return self.factory(name)(*args, **options)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
