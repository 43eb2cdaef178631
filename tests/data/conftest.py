"""Fixtures for the data tests: an isolated cache, a local HTTP mirror, and tiny dataset files in
the exact formats of the originals (gzipped IDX, the CIFAR-10 python tar.gz)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path, monkeypatch):
    """Every data test gets an empty cache and no mirror, whatever the user's environment says."""
    monkeypatch.setenv("NORMLAB_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NORMLAB_DATA_MIRROR", raising=False)
    # A proxy configured on the machine must not intercept requests to the local test server.
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- the local mirror


class _CountingHandler(SimpleHTTPRequestHandler):
    """Serves files from a directory and records every requested path on the server."""

    def do_GET(self):
        self.server.requested_paths.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # keep test output clean
        pass


@dataclass
class Mirror:
    """A running local mirror: put files under ``root/<dataset>/<file>``."""

    root: Path
    url: str
    requested_paths: list[str] = field(default_factory=list)

    def requests_for(self, file_name: str) -> int:
        return sum(path.endswith("/" + file_name) for path in self.requested_paths)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 (free port) in a thread; NORMLAB_DATA_MIRROR points at it.

    Shut down at teardown."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_CountingHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested_paths = []
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", url)
    try:
        yield Mirror(root=root, url=url, requested_paths=server.requested_paths)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- file formats


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000 08 <ndim>, sizes as big-endian uint32, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@dataclass
class FakeIdxDataset:
    train_images: np.ndarray  # uint8 (N, 28, 28)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checksums: dict[str, str]


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture
def write_idx_dataset():
    """``write(folder, num_train=30, num_test=10, seed=0) -> FakeIdxDataset``: four gzipped IDX
    files, 28x28 images, labels 0..9, named like MNIST's."""

    def write(folder: Path, num_train: int = 30, num_test: int = 10, seed: int = 0):
        rng = np.random.default_rng(seed)
        arrays = {
            "train_images": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
            "train_labels": (np.arange(num_train) % 10).astype(np.uint8),
            "test_images": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
            "test_labels": (np.arange(num_test) % 10)[::-1].astype(np.uint8),
        }
        folder.mkdir(parents=True, exist_ok=True)
        checksums = {}
        for key, file_name in IDX_FILES.items():
            path = folder / file_name
            path.write_bytes(gzip.compress(idx_bytes(arrays[key])))
            checksums[file_name] = sha256_of(path)
        return FakeIdxDataset(**arrays, checksums=checksums)

    return write


@dataclass
class FakeCifar:
    train_images: np.ndarray  # uint8 (N, 32, 32, 3), NHWC as normlab returns them
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checksum: str


def cifar_batch_pickle(images_nhwc: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch pickled like the original: a protocol-2 pickle of a dict with byte-string keys,
    ``b"data"`` uint8 (N, 3072) channel-major rows, ``b"labels"`` a list of ints."""
    rows = images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), -1)
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(rows),
        b"filenames": [b"image_%d.png" % i for i in range(len(labels))],
    }
    payload = pickle.dumps(batch, protocol=2)
    # The original files were written before numpy moved numpy.core to numpy._core.
    return payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def cifar_archive_bytes(members: dict[str, bytes]) -> bytes:
    """A gzipped tar holding ``members`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def write_cifar_archive():
    """``write(folder, per_batch=4, seed=0) -> FakeCifar``: cifar-10-python.tar.gz with
    data_batch_1..5 and test_batch (``per_batch`` images each) under cifar-10-batches-py/."""

    def write(folder: Path, per_batch: int = 4, seed: int = 0, extra_members=None):
        rng = np.random.default_rng(seed)
        names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
        images = {n: rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8) for n in names}
        labels = {n: rng.integers(0, 10, per_batch) for n in names}
        members = {
            f"cifar-10-batches-py/{n}": cifar_batch_pickle(images[n], labels[n]) for n in names
        }
        members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": []}, 2)
        members.update(extra_members or {})
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cifar-10-python.tar.gz"
        path.write_bytes(cifar_archive_bytes(members))
        return FakeCifar(
            train_images=np.concatenate([images[n] for n in names[:5]]),
            train_labels=np.concatenate([labels[n] for n in names[:5]]),
            test_images=images["test_batch"],
            test_labels=labels["test_batch"],
            checksum=sha256_of(path),
        )

    return write


@pytest.fixture
def formats():
    """The encoders above, for tests that build unusual files themselves."""
    return SimpleNamespace(
        sha256_of=sha256_of,
        idx_bytes=idx_bytes,
        cifar_batch_pickle=cifar_batch_pickle,
        cifar_archive_bytes=cifar_archive_bytes,
    )
