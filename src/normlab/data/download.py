"""Fetch dataset files into a local cache, verified by checksum.

Layout: ``<cache>/<dataset>/<file name>``, where ``<cache>`` is, first found: the ``data_dir``
argument, ``$NORMLAB_DATA_DIR``, or the per-user cache ``pooch.os_cache("normlab")``
(``~/.cache/normlab`` on Linux).

A file is downloaded from its canonical URL, or from ``$NORMLAB_DATA_MIRROR/<dataset>/<file name>``
when that variable is set. pooch checks the checksum of the download *and* of a cached copy on
every call: a cached file that does not match (truncated, corrupted, a different version) is
downloaded again; if that fails, the error says so, and the bad file is never returned.

Every failure is raised as a one-line ``DataUnavailableError``; exceptions from requests/pooch
never reach the user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

import pooch
import requests

from normlab.errors import DataUnavailableError, NormlabError

DATA_DIR_VARIABLE = "NORMLAB_DATA_DIR"
MIRROR_VARIABLE = "NORMLAB_DATA_MIRROR"

# "sha256:<64 hex>" or "md5:<32 hex>" (or a bare sha256, as pooch accepts).
_CHECKSUM_PATTERN = re.compile(r"^(?:(sha256:)?[0-9a-f]{64}|md5:[0-9a-f]{32})$")


def cache_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: ``data_dir``, else ``$NORMLAB_DATA_DIR``, else the per-user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_environment = os.environ.get(DATA_DIR_VARIABLE)
    if from_environment:
        return Path(from_environment).expanduser()
    return Path(pooch.os_cache("normlab"))


def source_url(dataset: str, file_name: str, canonical_url: str) -> str:
    """The download URL: ``$NORMLAB_DATA_MIRROR/<dataset>/<file_name>`` if set, else canonical."""
    mirror = os.environ.get(MIRROR_VARIABLE)
    if not mirror:
        return canonical_url
    # pooch would reject other schemes with a ValueError indistinguishable from a bad checksum.
    if not mirror.startswith(("http://", "https://")):
        raise NormlabError(
            f"{MIRROR_VARIABLE} must be an http:// or https:// URL, got {mirror!r}; to use files "
            f"already on disk, set {DATA_DIR_VARIABLE} to the directory holding <dataset>/<file>"
        )
    return f"{mirror.rstrip('/')}/{dataset}/{file_name}"


def check_checksum(checksum: str, file_name: str) -> str:
    """Return ``checksum`` lower-cased if it looks like ``sha256:<hex>`` or ``md5:<hex>``."""
    normalized = checksum.strip().lower()
    if not _CHECKSUM_PATTERN.match(normalized):
        raise NormlabError(
            f"bad checksum {checksum!r} for {file_name!r}; expected 'sha256:<64 hex digits>' "
            "or 'md5:<32 hex digits>'"
        )
    return normalized


def fetch_file(
    dataset: str,
    file_name: str,
    *,
    canonical_url: str,
    checksum: str,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the local path of a verified copy of one dataset file, downloading it if needed.

    Raises:
        DataUnavailableError: the file is neither in the cache (with the right checksum) nor
            downloadable, or the downloaded bytes do not match ``checksum``.
    """
    checksum = check_checksum(checksum, file_name)
    folder = cache_root(data_dir) / dataset
    cached = folder / file_name
    url = source_url(dataset, file_name, canonical_url)
    was_cached = cached.exists()
    try:
        with _quiet_pooch():
            local = pooch.retrieve(
                url,
                known_hash=checksum,
                fname=file_name,
                path=folder,
                progressbar=False,
            )
    except requests.exceptions.RequestException as error:
        raise DataUnavailableError(
            _cannot_download_message(dataset, file_name, url, cached, was_cached, error)
        ) from None
    except ValueError as error:
        # pooch raises ValueError when the downloaded bytes fail the checksum (and deletes them).
        raise DataUnavailableError(
            f"{dataset} file {file_name!r} downloaded from {url} failed verification "
            f"({_first_sentence(error)}); the download was discarded. {_mismatch_hint()}"
        ) from None
    except OSError as error:  # e.g. the cache directory cannot be created or written
        raise DataUnavailableError(
            f"cannot store {dataset} file {file_name!r} in {folder}: {error.strerror or error}; "
            f"set {DATA_DIR_VARIABLE} to a writable directory"
        ) from None
    return Path(local)


def _cannot_download_message(
    dataset: str, file_name: str, url: str, cached: Path, was_cached: bool,
    error: requests.exceptions.RequestException,
) -> str:
    """One line: which file, from where, why, and how to provide it another way."""
    if was_cached:
        cache_state = f"the cached copy {cached} failed its checksum and could not be replaced"
    else:
        cache_state = f"it is not in the cache ({cached})"
    return (
        f"cannot download {dataset} file {file_name!r} from {url} ({_describe(error)}) and "
        f"{cache_state}; place the original file at {cached}, set {DATA_DIR_VARIABLE} to a "
        f"directory holding {dataset}/{file_name}, or set {MIRROR_VARIABLE} to a base URL "
        f"serving <base>/{dataset}/{file_name}"
    )


def _describe(error: requests.exceptions.RequestException) -> str:
    """A short reason; requests' own messages span lines and nest urllib3 internals."""
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "connection failed"
    return type(error).__name__


def _mismatch_hint() -> str:
    if os.environ.get(MIRROR_VARIABLE):
        return f"Check that {MIRROR_VARIABLE} serves the original, unmodified file"
    return "The file on the server may have changed or been damaged in transit; try again"


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0].replace("\n", " ")


@contextlib.contextmanager
def _quiet_pooch():
    """Silence pooch's info messages ("Downloading data from ...") for the duration of a call."""
    logger = pooch.get_logger()
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)
