"""Where a run came from: package versions, code revision, machine, command line, seeds."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from pathlib import Path

# Distributions whose versions change results; normlab itself is listed first.
# onednn-cpu-gomp: when installed, conv_path="auto" runs CPU convolutions through it.
_PACKAGES = ("normlab", "jax", "jaxlib", "flax", "optax", "numpy", "pandas", "onednn-cpu-gomp")
_GIT_TIMEOUT_SECONDS = 5


def collect_provenance(*, seeds: dict) -> dict:
    """A JSON-able record of everything besides the config that determines a run's results.

    Never raises for missing information: an unavailable item is recorded as ``"unknown"`` (or
    ``None`` for the git revision of a tree that is not a git checkout).
    """
    versions = {name: package_version(name) for name in _PACKAGES}
    return {
        "normlab_version": versions.pop("normlab"),
        "versions": {**versions, "python": platform.python_version()},
        "platform": platform.platform(),
        "jax": jax_devices(),
        "git": git_revision(Path(__file__).resolve().parent),
        "hostname": socket.gethostname(),
        "command": list(sys.argv),
        "seeds": dict(seeds),
    }


def package_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"unknown"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def jax_devices() -> dict:
    """JAX's default backend and its devices, or ``"unknown"`` if JAX cannot start one."""
    try:
        import jax

        return {"backend": jax.default_backend(), "devices": [str(device) for device in jax.devices()]}
    except Exception:  # a broken accelerator setup must not stop a run from being recorded
        return {"backend": "unknown", "devices": []}


def git_revision(source_dir: Path) -> dict | None:
    """``{"revision": HEAD, "dirty": bool}`` for the checkout holding ``source_dir``, else None.

    ``dirty`` means tracked files differ from HEAD; untracked files (run outputs, caches) are
    ignored so that scanning them cannot slow a run's start.
    """
    revision = _git(source_dir, "rev-parse", "HEAD")
    if revision is None:
        return None
    status = _git(source_dir, "status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def _git(cwd: Path, *args: str) -> str | None:
    """Output of ``git <args>`` in ``cwd``, or None if git is missing, fails, or hangs."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
