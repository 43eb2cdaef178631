"""Shared test set-up: JAX on the CPU."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Runs in tests compile into a throw-away cache or none at all, never the user's cache directory
# (the tests of the compilation cache point NORMLAB_COMPILE_CACHE at a temporary one).
os.environ.setdefault("NORMLAB_COMPILE_CACHE", "0")
