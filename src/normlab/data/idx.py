"""Read the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is a big-endian header followed by raw data:

    bytes 0-1  zero
    byte  2    element type (0x08 = unsigned byte, the only one MNIST uses)
    byte  3    number of dimensions d
    4*d bytes  each dimension's size, uint32 big-endian
    rest       prod(sizes) elements in C order

So the first four bytes read as one uint32 are the "magic number": 2051 (0x0803) for an image
file of shape (N, rows, cols) and 2049 (0x0801) for a label file of shape (N,).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_UNSIGNED_BYTE = 0x08


def parse_idx(raw: bytes, *, expected_magic: int, source: str) -> np.ndarray:
    """Parse an uncompressed IDX byte string into a uint8 array of the shape its header gives.

    Args:
        raw: the file's bytes.
        expected_magic: ``IMAGES_MAGIC`` or ``LABELS_MAGIC``.
        source: file name used in error messages.

    Raises:
        NormlabError: wrong magic number, or the data is shorter or longer than the header says.
    """
    if len(raw) < 4:
        raise NormlabError(f"malformed IDX file {source}: only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise NormlabError(
            f"malformed IDX file {source}: magic number {magic}, expected {expected_magic}"
        )
    # For unsigned-byte data the magic number's low byte is the number of dimensions.
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise NormlabError(f"malformed IDX file {source}: header cut short")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        raise NormlabError(
            f"malformed IDX file {source}: {len(raw)} bytes, but its header {shape} needs "
            f"{expected_size}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_gz(path: Path, *, expected_magic: int) -> np.ndarray:
    """Decompress a ``.gz`` IDX file and parse it; a bad or truncated file is a NormlabError."""
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise NormlabError(f"cannot decompress {path}: {error}") from None
    return parse_idx(raw, expected_magic=expected_magic, source=str(path))
