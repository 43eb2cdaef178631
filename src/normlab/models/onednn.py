"""oneDNN's CPU convolutions inside jitted JAX code (``conv_path="onednn"``).

XLA's CPU convolution is the slowest part of a conv net's train step on CPU (README,
"Performance"); oneDNN, the library PyTorch's CPU convolutions run on, is 2-5x faster on the VGG
shapes (``bench/conv_paths.py``). This module puts oneDNN's stride-1 convolution into XLA programs
as three FFI custom calls and wraps them as JAX primitives, so ``jit``, ``grad``, ``jvp`` (the
Hessian-vector products of the curvature probes) and ``vmap`` all work.

The three primitives, for ``y = conv(x, w)`` with explicit zero padding ``pads`` (NHWC x HWIO):

- ``forward(x, w) -> y``                      ``(N,H,W,Ci) x (kh,kw,Ci,Co) -> (N,Ho,Wo,Co)``
- ``backward_data(dy, w) -> dx = J_x^T dy``   ``(N,Ho,Wo,Co) x (kh,kw,Ci,Co) -> (N,H,W,Ci)``
- ``backward_weights(x, dy) -> dw = J_w^T dy`` ``(N,H,W,Ci) x (N,Ho,Wo,Co) -> (kh,kw,Ci,Co)``

with ``Ho = H + top + bottom - kh + 1`` (likewise W). Each is bilinear, and the transposes of each
one are the other two (``<ct, f(a, b)>`` rewritten for the undefined argument), which gives every
derivative of any order without a hand-written backward pass.

Where the library comes from: the optional extra ``normlab[onednn]`` installs oneDNN (the
``onednn-cpu-gomp`` wheel: native CPU runtime, GNU OpenMP threads) and its headers
(``onednn-devel-cpu-gomp``). On first use normlab compiles ``onednn_conv.cc`` (shipped with the
package) against them and jaxlib's FFI headers, with ``$CXX``, ``g++`` or ``c++``, into the per-user
cache (``<user cache>/normlab/onednn-conv/``; ``$NORMLAB_ONEDNN_DIR`` moves it), named by a hash of
everything the build depends on, so a changed source, compiler or jaxlib builds afresh and a
concurrent build cannot clobber another (write to a temporary name, then rename).
``NORMLAB_ONEDNN=0`` (or ``off``) disables the path; :func:`unavailable_reason` says why it is off.

oneDNN runs its kernels on its own OpenMP threads; normlab asks them to sleep when idle
(``OMP_WAIT_POLICY=PASSIVE`` unless the user set it) so they do not spin against XLA's threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pooch
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from normlab.errors import NormlabError

ENV_VARIABLE = "NORMLAB_ONEDNN"
DIR_VARIABLE = "NORMLAB_ONEDNN_DIR"
OFF_VALUES = ("0", "off", "false", "no", "none")
SOURCE = Path(__file__).with_name("onednn_conv.cc")
LIBRARY_DISTRIBUTION = "onednn-cpu-gomp"
HEADER_DISTRIBUTION = "onednn-devel-cpu-gomp"
INSTALL_HINT = 'pip install "normlab[onednn]"'

# Pads as the primitives take them: ((top, bottom), (left, right)).
Pads = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Toolchain:
    """What building the FFI library needs: libdnnl, oneDNN's and jaxlib's headers, a compiler."""

    library: Path        # .../lib/libdnnl.so.3
    include_dir: Path    # holds oneapi/dnnl/dnnl.h
    ffi_include_dir: Path
    compiler: str


def _distribution_file(distribution: str, suffix: str) -> Path | None:
    """The installed file of ``distribution`` whose path ends with ``suffix`` (None: not there)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if str(entry).endswith(suffix):
            path = Path(str(entry.locate())).resolve()
            if path.exists():
                return path
    return None


def find_toolchain() -> Toolchain | str:
    """The toolchain, or a one-line reason why it is incomplete."""
    library = _distribution_file(LIBRARY_DISTRIBUTION, "libdnnl.so.3")
    header = _distribution_file(HEADER_DISTRIBUTION, "oneapi/dnnl/dnnl.h")
    if library is None or header is None:
        return f"oneDNN is not installed ({INSTALL_HINT})"
    candidates = [os.environ.get("CXX", ""), "g++", "c++"]
    compiler = next((found for name in candidates if name and (found := shutil.which(name))), None)
    if compiler is None:
        return "no C++ compiler found (set CXX, or install g++)"
    return Toolchain(library=library, include_dir=header.parent.parent.parent,
                     ffi_include_dir=Path(jax.ffi.include_dir()), compiler=compiler)


def build_directory() -> Path:
    """Where the compiled FFI library is kept: ``$NORMLAB_ONEDNN_DIR`` or the per-user cache."""
    value = os.environ.get(DIR_VARIABLE, "").strip()
    return Path(value).expanduser() if value else Path(pooch.os_cache("normlab")) / "onednn-conv"


def compile_command(toolchain: Toolchain, output: Path) -> list[str]:
    """The compiler invocation. ``--disable-new-dtags`` writes an RPATH (not RUNPATH) so that
    libdnnl's own dependencies resolve too; ``-O2`` suffices (the work is inside oneDNN)."""
    lib_dir = toolchain.library.parent
    return [
        toolchain.compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
        f"-I{toolchain.ffi_include_dir}", f"-I{toolchain.include_dir}", str(SOURCE),
        f"-L{lib_dir}", f"-l:{toolchain.library.name}",
        f"-Wl,--disable-new-dtags,-rpath,{lib_dir}", "-o", str(output),
    ]


def library_path(toolchain: Toolchain) -> Path:
    """The cached library's path, named by a hash of the source and the whole build command."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update("\0".join(compile_command(toolchain, Path("out"))).encode())
    digest.update(importlib.metadata.version("jaxlib").encode())  # the FFI headers' version
    return build_directory() / f"libnormlab_onednn_{digest.hexdigest()[:16]}.so"


def build_library(toolchain: Toolchain) -> Path:
    """Compile the FFI library into the cache unless it is there already; return its path."""
    target = library_path(toolchain)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=target.stem, suffix=".so.tmp", dir=target.parent)
    os.close(handle)
    try:
        result = subprocess.run(compile_command(toolchain, Path(temporary)), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


TARGETS = {
    "forward": "NormlabConvForward",
    "backward_data": "NormlabConvBackwardData",
    "backward_weights": "NormlabConvBackwardWeights",
}


def _open(toolchain: Toolchain) -> ctypes.CDLL:
    """Load the cached library; one that fails to load (truncated, corrupt) is rebuilt once."""
    path = build_library(toolchain)
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(build_library(toolchain)))


@functools.cache
def _load() -> ctypes.CDLL | str:
    """Build (if needed), load and register the FFI library once per process; or the reason not."""
    if os.environ.get(ENV_VARIABLE, "").strip().lower() in OFF_VALUES:
        return f"turned off by {ENV_VARIABLE}"
    toolchain = find_toolchain()
    if isinstance(toolchain, str):
        return toolchain
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by libgomp when libdnnl loads it
    try:
        library = _open(toolchain)
    except (OSError, RuntimeError) as error:
        return f"building or loading the oneDNN FFI library failed: {error}"
    for name in TARGETS.values():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
    library.normlab_conv_implementation.restype = ctypes.c_char_p
    library.normlab_conv_implementation.argtypes = [ctypes.POINTER(ctypes.c_int64)]
    return library


def unavailable_reason() -> str | None:
    """Why ``conv_path="onednn"`` cannot run here (None: it can). Builds the library on first call."""
    loaded = _load()
    return loaded if isinstance(loaded, str) else None


def available() -> bool:
    return unavailable_reason() is None


def require() -> None:
    """Raise a one-line :class:`NormlabError` if the oneDNN path cannot run."""
    reason = unavailable_reason()
    if reason is not None:
        raise NormlabError(f'conv path "onednn" is unavailable: {reason}')


def implementation(direction: str, x_shape, kernel_shape, pads: Pads) -> str:
    """The kernel oneDNN picked for one direction and shape (e.g. ``"jit:avx512_core"``)."""
    require()
    library = _load()
    assert isinstance(library, ctypes.CDLL)  # require() passed
    n, h, w, c_in = x_shape
    kh, kw, _, c_out = kernel_shape
    key = (list(TARGETS).index(direction), n, h, w, c_in, kh, kw, c_out, *pads[0], *pads[1])
    return library.normlab_conv_implementation((ctypes.c_int64 * 12)(*key)).decode()


# --- shapes ------------------------------------------------------------------------------------

def output_shape(x_shape, kernel_shape, pads: Pads) -> tuple[int, ...]:
    n, h, w, _ = x_shape
    kh, kw, _, c_out = kernel_shape
    (top, bottom), (left, right) = pads
    return (n, h + top + bottom - kh + 1, w + left + right - kw + 1, c_out)


def input_shape(dy_shape, kernel_shape, pads: Pads) -> tuple[int, ...]:
    n, h_out, w_out, _ = dy_shape
    kh, kw, c_in, _ = kernel_shape
    (top, bottom), (left, right) = pads
    return (n, h_out - top - bottom + kh - 1, w_out - left - right + kw - 1, c_in)


def kernel_shape_of(x_shape, dy_shape, pads: Pads) -> tuple[int, ...]:
    _, h, w, c_in = x_shape
    _, h_out, w_out, c_out = dy_shape
    (top, bottom), (left, right) = pads
    return (h + top + bottom - h_out + 1, w + left + right - w_out + 1, c_in, c_out)


SHAPE_RULES = {"forward": output_shape, "backward_data": input_shape, "backward_weights": kernel_shape_of}


# --- primitives --------------------------------------------------------------------------------

def _ffi_call(direction: str, first, second, pads: Pads):
    require()  # builds and registers the FFI targets on first use
    shape = SHAPE_RULES[direction](first.shape, second.shape, pads)
    (top, bottom), (left, right) = pads
    call = jax.ffi.ffi_call(TARGETS[direction], jax.ShapeDtypeStruct(shape, jnp.float32))
    return call(first, second, pad_top=np.int64(top), pad_bottom=np.int64(bottom),
                pad_left=np.int64(left), pad_right=np.int64(right))


def _make_primitive(direction: str) -> Primitive:
    primitive = Primitive(f"normlab_onednn_conv_{direction}")
    primitive.def_impl(functools.partial(_ffi_call, direction))
    primitive.def_abstract_eval(
        lambda a, b, *, pads: jax.core.ShapedArray(SHAPE_RULES[direction](a.shape, b.shape, pads), jnp.float32))
    mlir.register_lowering(
        primitive, mlir.lower_fun(functools.partial(_ffi_call, direction), multiple_results=False), platform="cpu")
    return primitive


forward_p = _make_primitive("forward")
backward_data_p = _make_primitive("backward_data")
backward_weights_p = _make_primitive("backward_weights")

# Transposes (ct: the cotangent of the primitive's result). From <ct, conv(x, w)> =
# <bwd_data(ct, w), x> = <bwd_weights(x, ct), w>:
#   forward(x, w):          x <- bwd_data(ct, w)        w <- bwd_weights(x, ct)
#   backward_data(dy, w):   dy <- forward(ct, w)        w <- bwd_weights(ct, dy)
#   backward_weights(x,dy): x <- bwd_data(dy, ct)       dy <- forward(x, ct)
ad.defbilinear(forward_p,
               lambda ct, x, w, *, pads: backward_data_p.bind(ct, w, pads=pads),
               lambda ct, x, w, *, pads: backward_weights_p.bind(x, ct, pads=pads))
ad.defbilinear(backward_data_p,
               lambda ct, dy, w, *, pads: forward_p.bind(ct, w, pads=pads),
               lambda ct, dy, w, *, pads: backward_weights_p.bind(ct, dy, pads=pads))
ad.defbilinear(backward_weights_p,
               lambda ct, x, dy, *, pads: backward_data_p.bind(dy, ct, pads=pads),
               lambda ct, x, dy, *, pads: forward_p.bind(x, ct, pads=pads))


def _batch_rule(primitive: Primitive, args, dims, *, pads: Pads):
    """vmap: fold the mapped axis into the batch N when only the activation is mapped (forward,
    backward-data: one bigger call); otherwise map sequentially (``lax.map``) over the variants."""
    (a, b), (dim_a, dim_b) = args, dims
    if primitive is not backward_weights_p and dim_b is None:
        a = jnp.moveaxis(a, dim_a, 0)
        variants, n = a.shape[:2]
        out = primitive.bind(a.reshape(variants * n, *a.shape[2:]), b, pads=pads)
        return out.reshape(variants, n, *out.shape[1:]), 0
    variants = a.shape[dim_a] if dim_a is not None else b.shape[dim_b]

    def front(value, dim):
        return jnp.broadcast_to(value, (variants, *value.shape)) if dim is None else jnp.moveaxis(value, dim, 0)

    out = jax.lax.map(lambda pair: primitive.bind(pair[0], pair[1], pads=pads), (front(a, dim_a), front(b, dim_b)))
    return out, 0


for _primitive in (forward_p, backward_data_p, backward_weights_p):
    batching.primitive_batchers[_primitive] = functools.partial(_batch_rule, _primitive)


def conv2d_onednn(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 NHWC x HWIO convolution by oneDNN (float32; see the module docstring)."""
    require()
    if x.dtype != jnp.float32 or kernel.dtype != jnp.float32:
        raise NormlabError(f'conv path "onednn" needs float32 inputs; got {x.dtype} and {kernel.dtype}')
    kh, kw = kernel.shape[0], kernel.shape[1]
    # oneDNN 3.2 crashes (its gemm convolution) when a pad reaches the kernel's size, and takes no
    # negative pads; pass it pads in [0, k - 1] and apply the rest as zero padding or cropping.
    inner = tuple((min(max(int(a), 0), k - 1), min(max(int(b), 0), k - 1)) for (a, b), k in zip(pads, (kh, kw)))
    outer = [(int(a) - ia, int(b) - ib) for (a, b), (ia, ib) in zip(pads, inner)]
    if any(outer[0] + outer[1]):
        x = jax.lax.pad(x, jnp.array(0, x.dtype), [(0, 0, 0), (*outer[0], 0), (*outer[1], 0), (0, 0, 0)])
    plain: Pads = (inner[0], inner[1])  # hashable, plain ints
    return forward_p.bind(x, kernel, pads=plain)
