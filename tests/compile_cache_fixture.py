"""One throw-away compilation cache for the tests of a module or package that run many tiny runs."""

from __future__ import annotations

import pytest

from normlab.train.compile_cache import ENV_VARIABLE, configure_compile_cache


def shared_compile_cache(scope: str):
    """An autouse fixture of ``scope`` ("module" or "package") pointing ``$NORMLAB_COMPILE_CACHE``
    (inherited by subprocesses) at one temporary directory, so only the first of its runs compiles
    each function; restored afterwards, and the next run outside it configures its own cache.
    Use as ``shared_compile_cache = compile_cache_fixture.shared_compile_cache("module")``."""

    @pytest.fixture(scope=scope, autouse=True)
    def fixture(tmp_path_factory):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(ENV_VARIABLE, str(tmp_path_factory.mktemp("compile-cache")))
            yield
        configure_compile_cache(None)

    return fixture
