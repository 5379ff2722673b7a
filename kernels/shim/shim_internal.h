// shim_internal.h: C++-only helpers shared by the shim's translation units
// (not part of the C ABI; never included from Go). ares_torch.cpp defines
// the ares_internal_ functions; every TU, ares_torch.cpp too, makes and reads
// tensor handles and statuses through them, and writes its entry points with
// the helpers of namespace ares_shim below.
#ifndef ARES_SHIM_INTERNAL_H
#define ARES_SHIM_INTERNAL_H

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "ares_torch.h"

// The ares_internal_ functions are the shim's own, hidden from its exported
// symbols: calls to them are direct, and inlined within ares_torch.cpp,
// instead of going through the dynamic linker's table on every op.
#define ARES_INTERNAL __attribute__((visibility("hidden")))

// A new handle for t, owned by the caller and counted by ares_live_tensors.
ARES_INTERNAL ares_tensor ares_internal_wrap(at::Tensor t);
// The tensor behind h; throws (reported as ARES_ERR_INVALID) when h is null.
ARES_INTERNAL const at::Tensor &ares_internal_get(ares_tensor h, const char *what = "tensor");
// A status with this code and message (never NULL; freed with ares_status_free).
ARES_INTERNAL ares_status *ares_internal_status(int32_t code, const std::string &msg);
// The status for the exception being handled; call only inside a catch block.
// Same classification as every ares_torch.cpp entry point.
ARES_INTERNAL ares_status *ares_internal_current_exception_status();
// Applies the intra-op thread count (ares_set_num_threads) to the calling thread.
ARES_INTERNAL void ares_internal_sync_threads();
// An argument an entry point rejects; every entry point reports it as
// ARES_ERR_INVALID.
struct ares_invalid_arg : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Runs the body of a C entry point: applies the intra-op thread count, and
// turns any exception into a status (NULL on success).
template <typename F>
ares_status *ares_internal_guard(F &&body) {
  try {
    ares_internal_sync_threads();
    std::forward<F>(body)();
    return nullptr;
  } catch (...) {
    return ares_internal_current_exception_status();
  }
}
// Scaled dot-product attention exactly as ares_attention computes it (mask
// may be undefined; scale <= 0 means 1/sqrt(D)); for the fused model ops.
ARES_INTERNAL at::Tensor ares_internal_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                   const at::Tensor &mask, bool is_causal, double scale);

// The short names the translation units write their entry points with.
namespace ares_shim {

template <typename F>
ares_status *guard(F &&body) {
  return ares_internal_guard(std::forward<F>(body));
}

[[noreturn]] inline void invalid(const std::string &msg) { throw ares_invalid_arg(msg); }

inline void check_out(const void *p) {
  if (p == nullptr) invalid("null output pointer");
}

// An optional argument: the tensor behind h, or none when h is null.
inline c10::optional<at::Tensor> opt(ares_tensor h) {
  if (h == nullptr) return c10::nullopt;
  return ares_internal_get(h);
}

// guard() for an entry point with one tensor result: body returns it, and it
// is handed out in *out as a new handle.
template <typename F>
ares_status *guard_out(ares_tensor *out, F &&body) {
  return guard([&] {
    check_out(out);
    *out = ares_internal_wrap(body());
  });
}

// Hands out two results; neither handle is made unless both are.
inline void wrap_both(at::Tensor a, at::Tensor b, ares_tensor *out_a, ares_tensor *out_b) {
  ares_tensor ha = ares_internal_wrap(std::move(a));
  try {
    *out_b = ares_internal_wrap(std::move(b));
  } catch (...) {
    ares_tensor_free(ha);
    throw;
  }
  *out_a = ha;
}

// guard_out for an entry point with two tensor results: body returns them
// as a pair or tuple.
template <typename F>
ares_status *guard_out2(ares_tensor *out_a, ares_tensor *out_b, F &&body) {
  return guard([&] {
    check_out(out_a);
    check_out(out_b);
    auto r = body();
    wrap_both(std::get<0>(r), std::get<1>(r), out_a, out_b);
  });
}

// "[2, 3, 4]", for error messages.
inline std::string shape_str(const at::Tensor &t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); i++) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace ares_shim

#endif  // ARES_SHIM_INTERNAL_H
