// Stride-1 2-D convolution through oneDNN, as three XLA FFI handlers (CPU).
//
// normlab compiles this file on first use (normlab.models.onednn) against the headers of the
// installed `onednn-devel` wheel, jaxlib's FFI headers and the `onednn` wheel's libdnnl.
//
// Layouts are normlab's: activations NHWC (N, H, W, C), kernels HWIO (kh, kw, C_in, C_out), both
// row-major float32. oneDNN describes tensors by logical dimensions (N, C, H, W) and (O, I, kh, kw)
// plus a physical format tag, so NHWC is `nhwc` and HWIO is `hwio`: no copy of activations. The
// kernel's format is left to oneDNN (`any`, so it can choose a blocked layout its fast kernels
// need) and the small kernel is reordered to and from HWIO on every call.
//
// The three directions of y = conv(x, w), with explicit zero padding (top, bottom, left, right):
//   forward          y  = conv(x, w)                          x (N,H,W,Ci), w -> y (N,Ho,Wo,Co)
//   backward-data    dx = d<dy, conv(x, w)>/dx                dy, w -> dx (N,H,W,Ci)
//   backward-weights dw = d<dy, conv(x, w)>/dw                x, dy -> dw (kh,kw,Ci,Co)
// oneDNN's "direct" convolution is a cross-correlation, like lax.conv_general_dilated.
//
// Primitives are built once per (direction, shapes, padding) and cached; one mutex serializes
// building and execution (a primitive's library-managed scratchpad is not for concurrent use,
// and oneDNN's own threads already use every core).

#include <array>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oneapi/dnnl/dnnl.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Direction : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// (direction, N, H, W, Ci, kh, kw, Co, top, bottom, left, right)
using PlanKey = std::array<int64_t, 12>;

std::string Describe(dnnl_status_t status, const char* what) {
  return std::string("oneDNN ") + what + " failed with status " + std::to_string(static_cast<int>(status));
}

#define NORMLAB_DNNL(call, what)                                   \
  do {                                                             \
    dnnl_status_t normlab_status_ = (call);                        \
    if (normlab_status_ != dnnl_success) throw Describe(normlab_status_, what); \
  } while (0)

struct MemoryDesc {
  dnnl_memory_desc_t md = nullptr;
  MemoryDesc() = default;
  MemoryDesc(const MemoryDesc&) = delete;
  MemoryDesc& operator=(const MemoryDesc&) = delete;
  ~MemoryDesc() { if (md) dnnl_memory_desc_destroy(md); }
};

dnnl_engine_t Engine() {
  static dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    NORMLAB_DNNL(dnnl_engine_create(&e, dnnl_cpu, 0), "engine creation");
    return e;
  }();
  return engine;
}

dnnl_stream_t Stream() {
  static dnnl_stream_t stream = [] {
    dnnl_stream_t s = nullptr;
    NORMLAB_DNNL(dnnl_stream_create(&s, Engine(), dnnl_stream_default_flags), "stream creation");
    return s;
  }();
  return stream;
}

void MakeDesc(MemoryDesc& out, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
  NORMLAB_DNNL(dnnl_memory_desc_create_with_tag(&out.md, 4, dims, dnnl_f32, tag), "memory descriptor");
}

// A reorder between the user's HWIO kernel and the layout the convolution chose (or none).
struct KernelReorder {
  dnnl_primitive_t reorder = nullptr;
  dnnl_memory_desc_t user_md = nullptr;     // owned
  dnnl_memory_desc_t chosen_md = nullptr;   // owned clone
  size_t chosen_bytes = 0;
};

struct Plan {
  dnnl_primitive_t conv = nullptr;
  // Descriptors of the three tensors as the convolution sees them: activation-like ones are the
  // user's NHWC; the kernel-like one is `chosen_md` of `kernel`.
  dnnl_memory_desc_t first_md = nullptr;   // x (forward, backward-weights) or dy (backward-data)
  dnnl_memory_desc_t result_md = nullptr;  // y, dx, or (chosen) dw
  dnnl_memory_desc_t other_md = nullptr;   // w (chosen) for forward/backward-data, dy for backward-weights
  KernelReorder kernel;
  std::string implementation;
};

const_dnnl_memory_desc_t Query(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
  return dnnl_primitive_desc_query_md(pd, what, 0);
}

dnnl_memory_desc_t Clone(const_dnnl_memory_desc_t md) {
  dnnl_memory_desc_t copy = nullptr;
  NORMLAB_DNNL(dnnl_memory_desc_clone(&copy, md), "descriptor clone");
  return copy;
}

// `to_user`: reorder from the chosen layout to HWIO (backward-weights' result), else HWIO to chosen.
void PrepareKernelReorder(KernelReorder& r, const dnnl_dims_t kernel_dims, const_dnnl_memory_desc_t chosen,
                          bool to_user) {
  MemoryDesc user;
  MakeDesc(user, kernel_dims, dnnl_hwio);
  r.user_md = user.md;
  user.md = nullptr;
  r.chosen_md = Clone(chosen);
  r.chosen_bytes = dnnl_memory_desc_get_size(r.chosen_md);
  if (dnnl_memory_desc_equal(r.user_md, r.chosen_md)) return;
  dnnl_primitive_desc_t pd = nullptr;
  const_dnnl_memory_desc_t src = to_user ? r.chosen_md : r.user_md;
  const_dnnl_memory_desc_t dst = to_user ? r.user_md : r.chosen_md;
  NORMLAB_DNNL(dnnl_reorder_primitive_desc_create(&pd, src, Engine(), dst, Engine(), nullptr), "kernel reorder");
  dnnl_status_t status = dnnl_primitive_create(&r.reorder, pd);
  dnnl_primitive_desc_destroy(pd);
  NORMLAB_DNNL(status, "kernel reorder primitive");
}

std::unique_ptr<Plan> BuildPlan(const PlanKey& key) {
  const int64_t direction = key[0], n = key[1], h = key[2], w = key[3], ci = key[4];
  const int64_t kh = key[5], kw = key[6], co = key[7];
  const int64_t top = key[8], bottom = key[9], left = key[10], right = key[11];
  const int64_t ho = h + top + bottom - kh + 1, wo = w + left + right - kw + 1;
  const dnnl_dims_t x_dims = {n, ci, h, w};
  const dnnl_dims_t y_dims = {n, co, ho, wo};
  const dnnl_dims_t w_dims = {co, ci, kh, kw};
  const dnnl_dims_t strides = {1, 1};
  const dnnl_dims_t dilates = {0, 0};
  const dnnl_dims_t pad_l = {top, left};
  const dnnl_dims_t pad_r = {bottom, right};

  MemoryDesc x_md, y_md, w_any;
  MakeDesc(x_md, x_dims, dnnl_nhwc);
  MakeDesc(y_md, y_dims, dnnl_nhwc);
  MakeDesc(w_any, w_dims, dnnl_format_tag_any);

  dnnl_primitive_desc_t forward_pd = nullptr;
  NORMLAB_DNNL(dnnl_convolution_forward_primitive_desc_create(
                   &forward_pd, Engine(), dnnl_forward_training, dnnl_convolution_direct, x_md.md, w_any.md,
                   nullptr, y_md.md, strides, dilates, pad_l, pad_r, nullptr),
               "forward convolution descriptor");
  dnnl_primitive_desc_t pd = forward_pd;
  dnnl_status_t status = dnnl_success;
  if (direction == kBackwardData) {
    status = dnnl_convolution_backward_data_primitive_desc_create(
        &pd, Engine(), dnnl_convolution_direct, x_md.md, w_any.md, y_md.md, strides, dilates, pad_l, pad_r,
        forward_pd, nullptr);
  } else if (direction == kBackwardWeights) {
    status = dnnl_convolution_backward_weights_primitive_desc_create(
        &pd, Engine(), dnnl_convolution_direct, x_md.md, w_any.md, nullptr, y_md.md, strides, dilates, pad_l,
        pad_r, forward_pd, nullptr);
  }
  if (status != dnnl_success) {
    dnnl_primitive_desc_destroy(forward_pd);
    throw Describe(status, "backward convolution descriptor");
  }

  auto plan = std::make_unique<Plan>();
  const char* impl = nullptr;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  plan->implementation = impl ? impl : "?";
  status = dnnl_primitive_create(&plan->conv, pd);
  if (status == dnnl_success) {
    if (direction == kForward) {
      PrepareKernelReorder(plan->kernel, w_dims, Query(pd, dnnl_query_weights_md), false);
      plan->first_md = Clone(x_md.md);
      plan->other_md = Clone(plan->kernel.chosen_md);
      plan->result_md = Clone(y_md.md);
    } else if (direction == kBackwardData) {
      PrepareKernelReorder(plan->kernel, w_dims, Query(pd, dnnl_query_weights_md), false);
      plan->first_md = Clone(y_md.md);
      plan->other_md = Clone(plan->kernel.chosen_md);
      plan->result_md = Clone(x_md.md);
    } else {
      PrepareKernelReorder(plan->kernel, w_dims, Query(pd, dnnl_query_diff_weights_md), true);
      plan->first_md = Clone(x_md.md);
      plan->other_md = Clone(y_md.md);
      plan->result_md = Clone(plan->kernel.chosen_md);
    }
  }
  if (pd != forward_pd) dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_desc_destroy(forward_pd);
  NORMLAB_DNNL(status, "convolution primitive");
  return plan;
}

std::mutex& Lock() {
  static std::mutex mutex;
  return mutex;
}

Plan& GetPlan(const PlanKey& key) {
  static std::map<PlanKey, std::unique_ptr<Plan>> plans;
  auto found = plans.find(key);
  if (found != plans.end()) return *found->second;
  auto inserted = plans.emplace(key, BuildPlan(key));
  return *inserted.first->second;
}

// A memory object over a caller's buffer, destroyed at scope end.
struct Memory {
  dnnl_memory_t mem = nullptr;
  Memory(const_dnnl_memory_desc_t md, void* data) {
    NORMLAB_DNNL(dnnl_memory_create(&mem, md, Engine(), data), "memory object");
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  ~Memory() { if (mem) dnnl_memory_destroy(mem); }
};

void Reorder(dnnl_primitive_t reorder, dnnl_memory_t from, dnnl_memory_t to) {
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  NORMLAB_DNNL(dnnl_primitive_execute(reorder, Stream(), 2, args), "kernel reorder");
}

// first, other: the two inputs in the order the handler receives them; result: the output buffer.
void Run(const PlanKey& key, void* first, void* other, void* result) {
  std::lock_guard<std::mutex> guard(Lock());
  Plan& plan = GetPlan(key);
  const int64_t direction = key[0];
  KernelReorder& kr = plan.kernel;
  // The kernel-like tensor: `other` (forward, backward-data) or `result` (backward-weights).
  void* user_kernel = direction == kBackwardWeights ? result : other;
  // Uninitialized, 64-byte aligned (oneDNN's preferred alignment) staging for a reordered kernel.
  std::unique_ptr<void, decltype(&std::free)> staged(
      kr.reorder ? std::aligned_alloc(64, (kr.chosen_bytes + 63) / 64 * 64) : nullptr, &std::free);
  if (kr.reorder && !staged) throw std::string("kernel staging allocation failed");
  void* conv_kernel = kr.reorder ? staged.get() : user_kernel;

  Memory user_mem(kr.user_md, user_kernel);
  Memory kernel_mem(kr.chosen_md, conv_kernel);
  if (kr.reorder && direction != kBackwardWeights) Reorder(kr.reorder, user_mem.mem, kernel_mem.mem);

  Memory first_mem(plan.first_md, first);
  Memory other_mem(plan.other_md, direction == kBackwardWeights ? other : conv_kernel);
  Memory result_mem(plan.result_md, direction == kBackwardWeights ? conv_kernel : result);
  dnnl_exec_arg_t args[3];
  if (direction == kForward) {
    args[0] = {DNNL_ARG_SRC, first_mem.mem};
    args[1] = {DNNL_ARG_WEIGHTS, other_mem.mem};
    args[2] = {DNNL_ARG_DST, result_mem.mem};
  } else if (direction == kBackwardData) {
    args[0] = {DNNL_ARG_DIFF_DST, first_mem.mem};
    args[1] = {DNNL_ARG_WEIGHTS, other_mem.mem};
    args[2] = {DNNL_ARG_DIFF_SRC, result_mem.mem};
  } else {
    args[0] = {DNNL_ARG_SRC, first_mem.mem};
    args[1] = {DNNL_ARG_DIFF_DST, other_mem.mem};
    args[2] = {DNNL_ARG_DIFF_WEIGHTS, result_mem.mem};
  }
  NORMLAB_DNNL(dnnl_primitive_execute(plan.conv, Stream(), 3, args), "convolution");
  if (kr.reorder && direction == kBackwardWeights) Reorder(kr.reorder, kernel_mem.mem, user_mem.mem);
  NORMLAB_DNNL(dnnl_stream_wait(Stream()), "stream wait");
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Result = ffi::ResultBuffer<ffi::F32>;

bool IsRank4(ffi::Span<const int64_t> d) { return d.size() == 4; }

ffi::Error Guarded(const PlanKey& key, void* first, void* other, void* result) {
  try {
    Run(key, first, other, result);
  } catch (const std::string& message) {
    return ffi::Error::Internal(message);
  }
  return ffi::Error::Success();
}

ffi::Error Forward(F32 x, F32 w, F32Result y, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  auto xd = x.dimensions(), wd = w.dimensions();
  if (!IsRank4(xd) || !IsRank4(wd)) return ffi::Error::InvalidArgument("conv needs rank-4 x and kernel");
  PlanKey key = {kForward, xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], top, bottom, left, right};
  return Guarded(key, x.untyped_data(), w.untyped_data(), y->untyped_data());
}

ffi::Error BackwardData(F32 dy, F32 w, F32Result dx, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  auto xd = dx->dimensions(), wd = w.dimensions();
  if (!IsRank4(xd) || !IsRank4(wd)) return ffi::Error::InvalidArgument("conv needs rank-4 dx and kernel");
  PlanKey key = {kBackwardData, xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], top, bottom, left, right};
  return Guarded(key, dy.untyped_data(), w.untyped_data(), dx->untyped_data());
}

ffi::Error BackwardWeights(F32 x, F32 dy, F32Result dw, int64_t top, int64_t bottom, int64_t left,
                           int64_t right) {
  auto xd = x.dimensions(), wd = dw->dimensions();
  if (!IsRank4(xd) || !IsRank4(wd)) return ffi::Error::InvalidArgument("conv needs rank-4 x and dw");
  PlanKey key = {kBackwardWeights, xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], top, bottom, left, right};
  return Guarded(key, x.untyped_data(), dy.untyped_data(), dw->untyped_data());
}

}  // namespace

#define NORMLAB_CONV_BINDING                                                         \
  ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>().Attr<int64_t>("pad_top")        \
      .Attr<int64_t>("pad_bottom").Attr<int64_t>("pad_left").Attr<int64_t>("pad_right")

XLA_FFI_DEFINE_HANDLER_SYMBOL(NormlabConvForward, Forward, NORMLAB_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NormlabConvBackwardData, BackwardData, NORMLAB_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NormlabConvBackwardWeights, BackwardWeights, NORMLAB_CONV_BINDING);

// The implementation oneDNN chose for a plan (for benchmarks and tests); "" if building failed.
extern "C" const char* normlab_conv_implementation(const int64_t* key12) {
  PlanKey key;
  for (int i = 0; i < 12; ++i) key[i] = key12[i];
  std::lock_guard<std::mutex> guard(Lock());
  try {
    return GetPlan(key).implementation.c_str();
  } catch (const std::string&) {
    return "";
  }
}
