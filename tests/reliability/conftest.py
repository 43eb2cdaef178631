"""The reliability tests run the same tiny run many times, in this process and in subprocesses:
a persistent compilation cache (one per test session) lets only the first compile each function."""

from __future__ import annotations

import os
import tempfile

import jax

CACHE = os.environ.setdefault("NORMLAB_TEST_COMPILATION_CACHE", tempfile.mkdtemp(prefix="normlab-jax-cache-"))
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
