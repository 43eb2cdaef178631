"""The reliability tests run the same tiny run many times, in this process and in subprocesses:
normlab's compilation cache (``NORMLAB_COMPILE_CACHE``), pointed at one throw-away directory
for these tests only, lets only the first of them compile each function."""

from __future__ import annotations

import pytest

from normlab.train.compile_cache import ENV_VARIABLE, configure_compile_cache


@pytest.fixture(scope="package", autouse=True)
def shared_compile_cache(tmp_path_factory):
    """``$NORMLAB_COMPILE_CACHE`` (inherited by subprocesses) for this package; restored after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VARIABLE, str(tmp_path_factory.mktemp("compile-cache")))
        yield
    configure_compile_cache(None)  # the next run outside this package configures its own again
