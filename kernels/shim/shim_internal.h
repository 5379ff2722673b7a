// shim_internal.h: C++-only helpers shared by the shim's translation units
// (not part of the C ABI; never included from Go). ares_torch.cpp defines
// them; other TUs (ares_dist.cpp, the fused kernels) use them to make and
// read tensor handles and statuses exactly as ares_torch.cpp does.
#ifndef ARES_SHIM_INTERNAL_H
#define ARES_SHIM_INTERNAL_H

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "ares_torch.h"

// A new handle for t, owned by the caller and counted by ares_live_tensors.
ares_tensor ares_internal_wrap(at::Tensor t);
// The tensor behind h; throws (reported as ARES_ERR_INVALID) when h is null.
const at::Tensor &ares_internal_get(ares_tensor h, const char *what = "tensor");
// A status with this code and message (never NULL; freed with ares_status_free).
ares_status *ares_internal_status(int32_t code, const std::string &msg);
// The status for the exception being handled; call only inside a catch block.
// Same classification as every ares_torch.cpp entry point.
ares_status *ares_internal_current_exception_status();
// Applies the intra-op thread count (ares_set_num_threads) to the calling thread.
void ares_internal_sync_threads();
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
at::Tensor ares_internal_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                   const at::Tensor &mask, bool is_causal, double scale);

#endif  // ARES_SHIM_INTERNAL_H
