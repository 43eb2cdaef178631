"""The reliability tests run the same tiny run many times, in this process and in subprocesses:
normlab's compilation cache (``NORMLAB_COMPILE_CACHE``), pointed at one throw-away directory
for these tests only, lets only the first of them compile each function."""

from __future__ import annotations

import compile_cache_fixture

shared_compile_cache = compile_cache_fixture.shared_compile_cache("package")
