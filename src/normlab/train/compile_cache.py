"""JAX's persistent compilation cache in a per-user directory, on by default.

A repeated run, and every member of a sweep, compiles the same programs as the run before it.
JAX can store each compiled executable on disk, keyed by a hash of the program (its StableHLO),
the compile options, the backend and the jax/jaxlib versions, and load it instead of compiling
(``jax.experimental.compilation_cache``). normlab turns that on for every run:

- directory: ``$NORMLAB_COMPILE_CACHE`` if it is a path; else ``<user cache>/normlab/jax-cache``
  (``pooch.os_cache("normlab")``, the per-user root the dataset cache also defaults to;
  ``~/.cache/normlab/jax-cache`` on Linux). ``NORMLAB_COMPILE_CACHE=0`` (or ``off``) turns it off.
- every program is cached, however fast it compiled (JAX's default skips programs that compiled
  in under a second; normlab's eval and probe steps are among those, and a run has several).

Why a stale or corrupt entry cannot change results: the key covers everything the executable
depends on (a different program, option or jax version is a different key, so there is no
"stale" entry to hit), and an entry that fails to decompress or deserialize is reported by JAX as
a warning and compiled afresh (``jax._src.compiler._cache_read``), never used. The cache is
trusted code: it lives in the user's own cache directory, not a shared one.

:class:`CacheEvents` counts the cache's ``jax.monitoring`` events (``cache_hits`` and
``compile_requests_use_cache``) so a run can record in ``run.json`` whether its steps came from
the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pooch
from jax import monitoring
from jax.experimental.compilation_cache import compilation_cache

ENV_VARIABLE = "NORMLAB_COMPILE_CACHE"
OFF_VALUES = ("0", "off", "false", "no", "none")
HIT_EVENT = "/jax/compilation_cache/cache_hits"
REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"


def compile_cache_dir(environ=None) -> Path | None:
    """The cache directory normlab uses, or None when ``NORMLAB_COMPILE_CACHE`` turns it off."""
    value = (os.environ if environ is None else environ).get(ENV_VARIABLE, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value:
        return Path(value).expanduser()
    return Path(pooch.os_cache("normlab")) / "jax-cache"


def active_compile_cache_dir() -> str | None:
    """The directory JAX's persistent compilation cache uses now (None: off)."""
    # jax.config declares its flags as attributes only at runtime (untyped); read this one by name.
    return jax.config.values["jax_compilation_cache_dir"]


def configure_compile_cache(directory: Path | None) -> Path | None:
    """Point JAX's persistent cache at ``directory`` (None: off) for the rest of the process.

    JAX opens its cache once per process, at the first compilation after the directory is set;
    changing the directory therefore also resets that (so tests and long-lived sessions that move
    it get the new one). Returns the directory in use.
    """
    wanted = None if directory is None else str(directory)
    if active_compile_cache_dir() != wanted:
        compilation_cache.set_cache_dir(wanted)
        compilation_cache.reset_cache()
    if wanted is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory


class CacheEvents:
    """``with CacheEvents() as events: ...``; then ``events.hits`` and ``events.requests``.

    ``requests`` counts the compilations that consulted the persistent cache, ``hits`` those it
    served; ``requests - hits`` were compiled (and written to the cache).
    """

    def __init__(self):
        self.hits = 0
        self.requests = 0

    def _listen(self, event: str, **_kwargs) -> None:
        if event == HIT_EVENT:
            self.hits += 1
        elif event == REQUEST_EVENT:
            self.requests += 1

    def summary(self, directory: str | Path | None) -> dict:
        """What ``run.json`` records under ``compile_cache`` (JAX computes cache keys, and so
        reports requests, even with no cache directory: those are not misses)."""
        if directory is None:
            return {"dir": None, "hits": 0, "misses": 0}
        return {"dir": str(directory), "hits": self.hits, "misses": self.requests - self.hits}

    def __enter__(self) -> CacheEvents:
        monitoring.register_event_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        monitoring.unregister_event_listener(self._listen)
