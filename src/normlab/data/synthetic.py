"""Generated datasets: no files, fully determined by their options and seed.

Each draws from independent streams ``np.random.default_rng([seed, stream])`` (stream 0: the
fixed structure, 1: training split, 2: test split), so e.g. changing ``num_train`` leaves the
class prototypes and the whole test split unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft

from normlab.data.dataset import Dataset
from normlab.data.normalization import normalize_splits
from normlab.errors import NormlabError, check_name

_STRUCTURE, _TRAIN, _TEST = 0, 1, 2


def _stream(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise NormlabError(f"{name} must be a positive integer, got {value!r}")


def class_images(
    prototypes: np.ndarray, num_examples: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced noisy copies of class prototypes.

    ``y_i = i mod K`` (then shuffled), ``x_i = clip(prototypes[y_i] + noise * eps_i, 0, 1)`` with
    ``eps_i ~ N(0, I)``. prototypes: (K, H, W, C) in [0, 1]. Returns x float64 (N, H, W, C) and
    y int32 (N,).
    """
    num_classes = prototypes.shape[0]
    labels = rng.permutation(np.arange(num_examples) % num_classes).astype(np.int32)
    noisy = prototypes[labels] + noise * rng.standard_normal((num_examples, *prototypes.shape[1:]))
    return np.clip(noisy, 0.0, 1.0), labels


def load_synthetic(
    *,
    data_dir=None,
    normalize: str | None = None,
    num_train: int = 512,
    num_test: int = 128,
    num_classes: int = 10,
    image_size: int = 8,
    channels: int = 1,
    noise: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Tiny learnable image classification for tests and smoke runs.

    Each class k has a prototype image ``P_k ~ U(0, 1)^(H, W, C)``; an example of class k is
    ``clip(P_k + noise * N(0, 1), 0, 1)``. With the defaults (64 pixels, noise 0.5) two prototypes
    are about 3.3 apart against a per-direction noise of 0.5, so a linear model learns it quickly.
    Shapes: x (N, image_size, image_size, channels) float32, y int32 in 0..num_classes-1.
    ``normalize`` defaults to ``"standard"`` (training-split per-channel mean and std).
    ``data_dir`` is accepted for a uniform signature and ignored.
    """
    del data_dir
    _require_positive(
        num_train=num_train,
        num_test=num_test,
        num_classes=num_classes,
        image_size=image_size,
        channels=channels,
    )
    if noise < 0:
        raise NormlabError(f"noise must be >= 0, got {noise!r}")
    prototypes = _stream(seed, _STRUCTURE).uniform(
        0.0, 1.0, (num_classes, image_size, image_size, channels)
    )
    raw_train, y_train = class_images(prototypes, num_train, noise, _stream(seed, _TRAIN))
    raw_test, y_test = class_images(prototypes, num_test, noise, _stream(seed, _TEST))
    return _classification_dataset("synthetic", raw_train, y_train, raw_test, y_test, num_classes, normalize)


def load_dln_gaussian(
    *,
    data_dir=None,
    normalize: str | None = None,
    num_examples: int = 1000,
    num_test: int = 1000,
    dim: int = 10,
    seed: int = 0,
) -> Dataset:
    """Regression data for S18's deep linear network (loss ``||W_k ... W_1 x - A x||^2``).

    ``A`` (dim, dim) has N(0, 1) entries; inputs ``x ~ N(0, I)`` of shape (num_examples, dim);
    targets ``y = x @ A.T`` (i.e. ``y_i = A x_i``), no noise. The test split is a second,
    independent draw of ``num_test`` inputs with the same ``A``. ``A`` is not stored: it is
    recovered exactly by least squares from the training split. Only ``normalize="none"`` is
    allowed (the inputs are already standard Gaussian).
    """
    del data_dir
    check_name("normalization for dln_gaussian", normalize or "none", ("none",))
    _require_positive(num_examples=num_examples, num_test=num_test, dim=dim)
    matrix = _stream(seed, _STRUCTURE).standard_normal((dim, dim))
    # Round the inputs to float32 first, so y = x @ A.T holds for the stored x up to the final
    # rounding of y alone.
    x_train = _stream(seed, _TRAIN).standard_normal((num_examples, dim)).astype(np.float32)
    x_test = _stream(seed, _TEST).standard_normal((num_test, dim)).astype(np.float32)
    return Dataset(
        name="dln_gaussian",
        x_train=x_train,
        y_train=(x_train.astype(np.float64) @ matrix.T).astype(np.float32),
        x_test=x_test,
        y_test=(x_test.astype(np.float64) @ matrix.T).astype(np.float32),
        num_classes=0,
        input_shape=(dim,),
        task="regression",
        normalization="none",
    )


def power_law_fields(rng: np.random.Generator, count: int, size: int, channels: int,
                     exponent: float = 1.0) -> np.ndarray:
    """Random images whose amplitude spectrum falls as ``1/f**exponent``, like natural images.

    White Gaussian noise is filtered in the Fourier domain by ``|f|^-exponent`` (the constant
    term removed; ``|f|`` in cycles per pixel, floored at ``1/size``), so the power spectrum
    falls as ``|f|^(-2 exponent)`` (natural images: exponent about 1). Each field is then shifted
    and scaled to mean 0 and standard deviation 1. Shape (count, size, size, channels), float32.
    """
    # Drawn channels-first, so the 2-D transforms run over contiguous rows (4x faster than NHWC).
    white = rng.standard_normal((count, channels, size, size), dtype=np.float32)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.maximum(np.sqrt(fy**2 + fx**2), 1.0 / size)
    gain = (radius ** -float(exponent)).astype(np.float32)
    gain[0, 0] = 0.0
    # scipy's transforms (scipy comes with scikit-learn) keep float32 and are ~3x faster here than numpy's.
    fields = scipy.fft.irfft2(scipy.fft.rfft2(white) * gain, s=(size, size))
    fields = np.ascontiguousarray(fields.transpose(0, 2, 3, 1))
    fields -= fields.mean(axis=(1, 2, 3), keepdims=True)
    fields /= fields.std(axis=(1, 2, 3), keepdims=True)
    return fields


def shifted(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``images[i]`` rolled (circularly) by ``dy[i]`` rows and ``dx[i]`` columns (``np.roll``)."""
    n, h, w = images.shape[:3]
    rows = (np.arange(h)[None, :] - dy[:, None]) % h
    cols = (np.arange(w)[None, :] - dx[:, None]) % w
    return images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def load_synthetic_cifar(*, data_dir=None, normalize: str | None = None, num_train: int = 2048,
                         num_test: int = 512, modes: int = 2, radius: float = 9.0, max_shift: int = 6,
                         background: float = 1.0, contrast: tuple[float, float] = (0.6, 1.4),
                         noise: float = 0.1, exponent: float = 1.0, seed: int = 0) -> Dataset:
    """CIFAR-10-shaped (32x32x3, 10 classes) generated images: an object on a cluttered background.

    Structure (stream 0): class k has ``modes`` templates ``T_km = (F_km + c_k) * G``: a
    :func:`power_law_fields` texture ``F_km`` (3 channels) plus a class colour ``c_k ~ N(0, I_3)``,
    under a centred Gaussian window ``G = exp(-r^2 / (2 radius^2))``. An example of class k
    (streams 1 and 2, balanced labels) is
    ``x = a * shift(flip(T_km)) + background * B + noise * eps``: a random template of its class,
    mirrored left-right with probability 1/2, rolled by up to ``max_shift`` pixels each way,
    contrast ``a ~ U(contrast)``, on its own power-law background ``B`` (3 channels, std 1) with
    white noise ``eps``. Like CIFAR-10 the images are spatially correlated (1/f spectrum), the
    class is carried by a localized, translated object and colour, and the clutter varies from
    image to image: a linear classifier on the pixels is far from perfect (ridge regression:
    46% test accuracy with the defaults) while a narrow VGG with BN learns it within a few
    hundred SGD steps. Without BN the narrow VGG leaves its initial plateau within ~150 steps at
    lr 0.02 (the white-noise class prototypes this replaced were linearly separable, and that
    network stayed at chance on them). ``normalize`` defaults to ``"standard"`` (training-split
    per-channel mean and std). ``data_dir`` is accepted for a uniform signature and ignored.
    """
    del data_dir
    _require_positive(num_train=num_train, num_test=num_test, modes=modes)
    if not (isinstance(max_shift, (int, np.integer)) and 0 <= max_shift < 32):
        raise NormlabError(f"max_shift must be an integer in 0..31, got {max_shift!r}")
    for name, value in (("radius", radius), ("exponent", exponent)):
        if not value > 0:
            raise NormlabError(f"{name} must be > 0, got {value!r}")
    for name, value in (("background", background), ("noise", noise)):
        if not value >= 0:
            raise NormlabError(f"{name} must be >= 0, got {value!r}")
    low, high = contrast
    if not 0 <= low <= high:
        raise NormlabError(f"contrast must be a range 0 <= low <= high, got {contrast!r}")
    size, num_classes = 32, 10
    structure = _stream(seed, _STRUCTURE)
    textures = power_law_fields(structure, num_classes * modes, size, 3, exponent)
    colours = np.repeat(structure.standard_normal((num_classes, 3)), modes, axis=0)
    centre = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size] - centre
    window = np.exp(-(yy**2 + xx**2) / (2 * radius**2))[None, :, :, None].astype(np.float32)
    templates = (textures + colours[:, None, None, :].astype(np.float32)) * window  # (classes * modes, 32, 32, 3)

    def split(stream: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        rng = _stream(seed, stream)
        labels = rng.permutation(np.arange(count) % num_classes).astype(np.int32)
        objects = templates[labels * modes + rng.integers(0, modes, count)]
        flip = rng.random(count) < 0.5
        objects[flip] = objects[flip, :, ::-1]
        dy, dx = rng.integers(-max_shift, max_shift + 1, (2, count))
        scale = rng.uniform(low, high, (count, 1, 1, 1)).astype(np.float32)
        clutter = power_law_fields(rng, count, size, 3, exponent)
        images = scale * shifted(objects, dy, dx) + np.float32(background) * clutter
        return images + np.float32(noise) * rng.standard_normal(images.shape, dtype=np.float32), labels

    raw_train, y_train = split(_TRAIN, num_train)
    raw_test, y_test = split(_TEST, num_test)
    return _classification_dataset("synthetic_cifar", raw_train, y_train, raw_test, y_test, num_classes, normalize)


def _classification_dataset(name, raw_train, y_train, raw_test, y_test, num_classes, normalize) -> Dataset:
    """A generated classification ``Dataset``, inputs normalized (default "standard") on the raw
    pixel range [0, 1]."""
    method = normalize or "standard"
    x_train, x_test = normalize_splits(raw_train, raw_test, method, pixel_max=1.0)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=num_classes, input_shape=tuple(x_train.shape[1:]), task="classification",
                   normalization=method)


def load_synthetic_mnist(*, data_dir=None, normalize: str | None = None, num_train: int = 2048,
                         num_test: int = 512, noise: float = 0.5, seed: int = 0) -> Dataset:
    """``synthetic`` at MNIST's shape (28x28x1, 10 classes): the download-free stand-in the
    ``tiny`` size of the MNIST presets trains on."""
    data = load_synthetic(data_dir=data_dir, normalize=normalize, num_train=num_train, num_test=num_test,
                          image_size=28, channels=1, noise=noise, seed=seed)
    return dataclasses.replace(data, name="synthetic_mnist")


def load_synthetic_fashion_mnist(*, data_dir=None, normalize: str | None = None, num_train: int = 2048,
                                 num_test: int = 512, noise: float = 0.5, seed: int = 1) -> Dataset:
    """``synthetic`` at Fashion-MNIST's shape (28x28x1, 10 classes), for the ``tiny`` size of the
    Fashion-MNIST presets; seed 1 by default, so its prototypes differ from ``synthetic_mnist``'s."""
    data = load_synthetic(data_dir=data_dir, normalize=normalize, num_train=num_train, num_test=num_test,
                          image_size=28, channels=1, noise=noise, seed=seed)
    return dataclasses.replace(data, name="synthetic_fashion_mnist")
