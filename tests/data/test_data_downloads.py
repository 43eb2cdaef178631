"""Downloads served over real HTTP from a local mirror: checksums, caching, corruption, outages."""

from __future__ import annotations

import gzip
import hashlib
import pickle

import numpy as np
import pooch
import pytest

from normlab.data import cache_root, load_dataset
from normlab.data.download import fetch_file, source_url
from normlab.data.mnist import FASHION_MNIST_CHECKSUMS, MNIST_CHECKSUMS
from normlab.errors import DataUnavailableError, NormlabError, UnknownNameError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_dataset_is_downloaded_parsed_and_cached(name, mirror, write_idx_dataset, capfd):
    fake = write_idx_dataset(mirror.root / name)
    cache = cache_root()

    data = load_dataset(name, normalize="unit", checksums=fake.checksums)

    assert data.x_train.shape == (30, 28, 28, 1) and data.x_test.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(data.x_train[..., 0], fake.train_images / np.float32(255))
    np.testing.assert_array_equal(data.y_train, fake.train_labels)
    np.testing.assert_array_equal(data.y_test, fake.test_labels)
    assert data.y_train.dtype == np.int32 and data.normalization == "unit"
    assert sorted(mirror.requested_paths) == sorted(f"/{name}/{f}" for f in fake.checksums)
    assert all((cache / name / file_name).is_file() for file_name in fake.checksums)
    assert capfd.readouterr().err == ""  # pooch's "Downloading data from ..." stays quiet

    again = load_dataset(name, normalize="unit", checksums=fake.checksums)
    assert len(mirror.requested_paths) == 4  # the second load read the cache only
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_cached_files_load_without_any_server(write_idx_dataset, isolated_data_env):
    fake = write_idx_dataset(isolated_data_env / "mnist")  # placed by hand, as the error suggests
    data = load_dataset("mnist", checksums=fake.checksums)
    assert data.num_train == 30 and data.normalization == "standard"


def test_data_dir_argument_overrides_the_environment(mirror, write_idx_dataset, tmp_path):
    fake = write_idx_dataset(mirror.root / "mnist")
    load_dataset("mnist", data_dir=tmp_path / "elsewhere", checksums=fake.checksums)
    assert (tmp_path / "elsewhere" / "mnist" / TRAIN_IMAGES).is_file()
    assert not (cache_root() / "mnist").exists()


def test_wrong_checksum_is_an_error_and_nothing_is_cached(mirror, write_idx_dataset):
    fake = write_idx_dataset(mirror.root / "mnist")
    wrong = {**fake.checksums, TRAIN_IMAGES: "sha256:" + "0" * 64}

    with pytest.raises(DataUnavailableError) as caught:
        load_dataset("mnist", checksums=wrong)

    message = str(caught.value)
    assert "\n" not in message
    assert TRAIN_IMAGES in message and "NORMLAB_DATA_MIRROR" in message
    assert not (cache_root() / "mnist" / TRAIN_IMAGES).exists()


def test_default_checksums_reject_files_that_are_not_the_originals(mirror, write_idx_dataset):
    write_idx_dataset(mirror.root / "mnist")
    with pytest.raises(DataUnavailableError, match="failed verification"):
        load_dataset("mnist")


def test_corrupted_cache_file_is_downloaded_again(mirror, write_idx_dataset):
    fake = write_idx_dataset(mirror.root / "mnist")
    first = load_dataset("mnist", checksums=fake.checksums)
    cached = cache_root() / "mnist" / TRAIN_IMAGES
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, e.g. by an interrupted copy

    second = load_dataset("mnist", checksums=fake.checksums)

    assert mirror.requests_for(TRAIN_IMAGES) == 2
    assert mirror.requests_for("t10k-images-idx3-ubyte.gz") == 1
    np.testing.assert_array_equal(second.x_train, first.x_train)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() in fake.checksums[TRAIN_IMAGES]


def test_corrupted_cache_file_with_no_network_is_a_clear_error(
    write_idx_dataset, isolated_data_env, closed_port_url, monkeypatch
):
    fake = write_idx_dataset(isolated_data_env / "mnist")
    cached = isolated_data_env / "mnist" / TRAIN_IMAGES
    cached.write_bytes(b"\x1f\x8b garbage")
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", closed_port_url)

    with pytest.raises(DataUnavailableError) as caught:
        load_dataset("mnist", checksums=fake.checksums)

    message = str(caught.value)
    assert "failed its checksum" in message and str(cached) in message and "\n" not in message


def test_unreachable_mirror_names_file_url_and_variables(closed_port_url, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", closed_port_url)

    with pytest.raises(DataUnavailableError) as caught:
        load_dataset("mnist")

    message = str(caught.value)
    assert "\n" not in message
    assert f"{closed_port_url}/mnist/{TRAIN_IMAGES}" in message
    assert "connection failed" in message
    assert "NORMLAB_DATA_DIR" in message and "NORMLAB_DATA_MIRROR" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_file_missing_on_the_mirror_reports_the_http_status(mirror):
    (mirror.root / "mnist").mkdir()
    with pytest.raises(DataUnavailableError, match=r"HTTP 404 .*NORMLAB_DATA_DIR"):
        load_dataset("mnist")


def test_unwritable_cache_is_a_clear_error(tmp_path, mirror):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(DataUnavailableError, match="NORMLAB_DATA_DIR"):
        load_dataset("mnist", data_dir=blocker)


def test_mirror_url_layout_and_canonical_default(monkeypatch):
    canonical = "https://example.org/x/t10k-labels-idx1-ubyte.gz"
    assert source_url("mnist", "t10k-labels-idx1-ubyte.gz", canonical) == canonical
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", "http://mirror.test/base/")
    assert (
        source_url("mnist", "t10k-labels-idx1-ubyte.gz", canonical)
        == "http://mirror.test/base/mnist/t10k-labels-idx1-ubyte.gz"
    )


def test_mirror_must_be_http(monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", "/srv/datasets")
    with pytest.raises(NormlabError, match="NORMLAB_DATA_MIRROR must be an http"):
        load_dataset("mnist")


def test_default_cache_is_the_per_user_cache(monkeypatch):
    monkeypatch.delenv("NORMLAB_DATA_DIR")
    assert cache_root() == pooch.os_cache("normlab")


def test_default_checksums_are_well_formed_sha256():
    for checksums in (MNIST_CHECKSUMS, FASHION_MNIST_CHECKSUMS):
        assert len(checksums) == 4
        assert all(c.startswith("sha256:") and len(c) == 7 + 64 for c in checksums.values())
    assert len(set(MNIST_CHECKSUMS.values()) | set(FASHION_MNIST_CHECKSUMS.values())) == 8


# The published checksums, written out here rather than read from normlab. MNIST: the SHA-256
# of the files whose MD5s are the ones published with them (train-images f68b3c2d...4873,
# train-labels d53e105e...9432, t10k-images 9fb629c4...73f3, t10k-labels ec29112d...629c).
# Fashion-MNIST: the same for the MD5s in its README (8d4fb7e6...bf0d, 25c81989...dffbe,
# bef4ecab...0ec79, bb300cfd...d310). CIFAR-10: the MD5 on the CIFAR page for the python version.
PUBLISHED = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar10": {"cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a"},
}


def test_default_checksums_are_the_published_ones():
    from normlab.data import cifar

    assert MNIST_CHECKSUMS == PUBLISHED["mnist"]
    assert FASHION_MNIST_CHECKSUMS == PUBLISHED["fashion_mnist"]
    assert {cifar.ARCHIVE: cifar.CHECKSUM} == PUBLISHED["cifar10"]


def test_checksum_for_an_unknown_file_or_malformed_checksum_is_rejected(mirror):
    with pytest.raises(UnknownNameError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", checksums={"train-images.gz": "sha256:" + "0" * 64})
    with pytest.raises(NormlabError, match="bad checksum"):
        fetch_file("mnist", TRAIN_IMAGES, canonical_url="http://x", checksum="deadbeef")
    assert mirror.requested_paths == []


# ----------------------------------------------------------------------------- malformed IDX


def _serve_mnist_with_train_images(mirror, write_idx_dataset, train_images_gz: bytes):
    fake = write_idx_dataset(mirror.root / "mnist")
    path = mirror.root / "mnist" / TRAIN_IMAGES
    path.write_bytes(train_images_gz)
    return {**fake.checksums, TRAIN_IMAGES: "sha256:" + hashlib.sha256(train_images_gz).hexdigest()}


def test_idx_file_with_wrong_magic_number_is_rejected(mirror, write_idx_dataset, formats):
    labels_as_images = gzip.compress(formats.idx_bytes(np.zeros(30, np.uint8)))  # magic 2049
    checksums = _serve_mnist_with_train_images(mirror, write_idx_dataset, labels_as_images)
    with pytest.raises(NormlabError, match="magic number 2049, expected 2051"):
        load_dataset("mnist", checksums=checksums)


def test_truncated_idx_data_is_rejected(mirror, write_idx_dataset, formats):
    cut = formats.idx_bytes(np.zeros((30, 28, 28), np.uint8))[:-5]
    checksums = _serve_mnist_with_train_images(mirror, write_idx_dataset, gzip.compress(cut))
    with pytest.raises(NormlabError, match="malformed IDX file .*header"):
        load_dataset("mnist", checksums=checksums)


def test_file_that_is_not_gzip_is_rejected(mirror, write_idx_dataset):
    checksums = _serve_mnist_with_train_images(mirror, write_idx_dataset, b"<html>oops</html>")
    with pytest.raises(NormlabError, match="cannot decompress"):
        load_dataset("mnist", checksums=checksums)


def test_image_and_label_counts_must_agree(mirror, write_idx_dataset, formats):
    too_few = gzip.compress(formats.idx_bytes(np.zeros((29, 28, 28), np.uint8)))
    checksums = _serve_mnist_with_train_images(mirror, write_idx_dataset, too_few)
    with pytest.raises(NormlabError, match="29 images but 30 labels"):
        load_dataset("mnist", checksums=checksums)


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar10_is_read_from_the_tar_gz_in_nhwc(mirror, write_cifar_archive):
    fake = write_cifar_archive(mirror.root / "cifar10")
    checksums = {"cifar-10-python.tar.gz": fake.checksum}

    data = load_dataset("cifar10", normalize="none", checksums=checksums)

    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    # "none" keeps raw pixel values, so NHWC layout and batch order can be compared exactly.
    np.testing.assert_array_equal(data.x_train, fake.train_images.astype(np.float32))
    np.testing.assert_array_equal(data.x_test, fake.test_images.astype(np.float32))
    np.testing.assert_array_equal(data.y_train, fake.train_labels)
    assert data.y_test.dtype == np.int32 and data.num_classes == 10
    assert mirror.requested_paths == ["/cifar10/cifar-10-python.tar.gz"]

    load_dataset("cifar10", checksums=checksums)
    assert len(mirror.requested_paths) == 1


def test_cifar10_accepts_an_md5_checksum(mirror, write_cifar_archive):
    write_cifar_archive(mirror.root / "cifar10")
    archive = (mirror.root / "cifar10" / "cifar-10-python.tar.gz").read_bytes()
    md5 = "md5:" + hashlib.md5(archive).hexdigest()
    assert load_dataset("cifar10", checksums={"cifar-10-python.tar.gz": md5}).num_test == 4
    with pytest.raises(DataUnavailableError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=mirror.root / "other", checksums={
            "cifar-10-python.tar.gz": "md5:" + "0" * 32
        })


def test_cifar10_standard_normalization_is_per_channel(mirror, write_cifar_archive):
    fake = write_cifar_archive(mirror.root / "cifar10")
    data = load_dataset("cifar10", checksums={"cifar-10-python.tar.gz": fake.checksum})
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)
    expected = (fake.train_images / np.float32(255) - mean) / std
    np.testing.assert_allclose(data.x_train, expected, rtol=1e-6, atol=1e-6)
    assert data.normalization == "standard"


def test_cifar10_pickle_that_references_other_code_is_refused(mirror, write_cifar_archive):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    fake = write_cifar_archive(
        mirror.root / "cifar10", extra_members={"cifar-10-batches-py/test_batch": evil}
    )
    with pytest.raises(NormlabError, match="refusing to load .*print"):
        load_dataset("cifar10", checksums={"cifar-10-python.tar.gz": fake.checksum})


def test_cifar10_archive_without_a_batch_is_rejected(mirror, formats):
    archive = formats.cifar_archive_bytes({"cifar-10-batches-py/readme.html": b"hi"})
    (mirror.root / "cifar10").mkdir()
    (mirror.root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)
    checksum = "sha256:" + hashlib.sha256(archive).hexdigest()
    with pytest.raises(NormlabError, match="lacks cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", checksums={"cifar-10-python.tar.gz": checksum})
