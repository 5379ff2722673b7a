// ares_model.cpp: the fused model ops of kernels/include/ares_torch.h
// (section "fused model ops"): one native call for a step of a transformer
// layer that the engine would otherwise make as many small calls.
//
// Each op is a composition of the same libtorch ops, in the same order, as
// the Go code it replaces (engine/model), so forward results are the same to
// the bit (gradients too, except in grouped attention: see
// grouped_attention) and autograd differentiates it as it would the separate
// ops. What it saves
// is the cgo round trips, the handles and the shape queries in between.
// Handles and statuses are made through shim_internal.h, exactly as in
// ares_torch.cpp, so ares_live_tensors counts these results too.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ares_torch.h"
#include "shim_internal.h"

namespace {

using namespace ares_shim;

// x*cos + rotate_half(x)*sin over the first rd of x's d (last) dimensions;
// the rest pass through unchanged (partial rotary).
at::Tensor rotate(const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin, int64_t rd, int64_t d) {
  // [.., d] -> [.., rd] rotated and [.., d - rd] as it is -> [.., d]
  if (rd < d) return at::cat({rotate(x.narrow(-1, 0, rd), cos, sin, rd, rd), x.narrow(-1, rd, d - rd)}, -1);
  int64_t half = d / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);  // [.., d] -> 2 x [.., d/2]
  auto rotated = at::cat({at::neg(x2), x1}, -1);                   // 2 x [.., d/2] -> [.., d]
  return at::add(at::mul(x, cos), at::mul(rotated, sin));
}

// [B, L, n*D] or [B, L, n, D] -> [B, n, L, D] (a view where it can be).
at::Tensor heads(const at::Tensor &x, int64_t n, int64_t d, const char *what) {
  if (x.dim() != 3 && x.dim() != 4) invalid(std::string(what) + " must be [B, L, n*D] or [B, L, n, D], got " + shape_str(x));
  if (x.size(-1) * (x.dim() == 4 ? x.size(2) : 1) != n * d)
    invalid(std::string(what) + " " + shape_str(x) + " does not hold " + std::to_string(n) + " heads of " +
            std::to_string(d));
  return x.reshape({x.size(0), x.size(1), n, d}).transpose(1, 2);  // [B, L, n*D] -> [B, L, n, D] -> [B, n, L, D]
}

// [B, nKV, T, D] -> [B, nKV*rep, T, D], each KV head repeated for its query heads.
[[maybe_unused]] at::Tensor repeat_kv(const at::Tensor &x, int64_t rep) {
  if (rep == 1) return x;
  int64_t B = x.size(0), nKV = x.size(1), T = x.size(2), D = x.size(3);
  // [B, nKV, T, D] -> [B, nKV, 1, T, D] -> [B, nKV, rep, T, D] -> [B, nKV*rep, T, D]
  return x.unsqueeze(2).expand({B, nKV, rep, T, D}).reshape({B, nKV * rep, T, D});
}

#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 1 || TORCH_VERSION_MAJOR >= 3
#define ARES_FUSED_SDPA 1
#endif

// Attention of q [B, nH, L, D] over k, v [B, nKV, T, D] with each KV head
// serving rep = nH/nKV consecutive query heads. With libtorch's fused
// attention (2.1 and later) the KV heads are repeated and it is called, as
// ares_attention. Before it, the composed attention of ares_attention runs once per
// member r of each group of query heads (q[:, kv*rep + r] against k[:, kv]),
// without copying every cached key and value rep times: every matrix product
// has the shapes it has over repeated heads, so the forward results are the
// same to the bit. The gradients are not always: q's gradient multiplies by
// k in the layout it has here (not a contiguous copy), and OpenBLAS rounds
// that product differently for some lengths (on an AVX-512 CPU, contraction
// lengths 32 to 74: one ulp in a sum, enough for two SFT runs to part after
// a few hundred steps); for rep > 2, k's and v's gradient terms are also
// summed in another order.
at::Tensor grouped_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor &mask,
                             double scale, int64_t rep) {
#ifdef ARES_FUSED_SDPA
  return ares_internal_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), mask, false, scale);
#else
  if (rep == 1) return ares_internal_attention(q, k, v, mask, false, scale);
  int64_t B = q.size(0), nH = q.size(1), L = q.size(2), D = q.size(3), nKV = k.size(1);
  double s = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
  auto qg = q.reshape({B, nKV, rep, L, D});  // [B, nH, L, D] -> [B, nKV, rep, L, D]
  auto kt = k.transpose(-2, -1);  // [B, nKV, T, D] -> [B, nKV, D, T]
  at::Tensor hidden;              // positions not to attend
  if (mask.defined()) hidden = mask.logical_not();
  std::vector<at::Tensor> outs;
  outs.reserve(rep);
  for (int64_t r = 0; r < rep; r++) {
    auto scores = at::matmul(qg.select(2, r), kt) * s;  // [B, nKV, L, D] @ [B, nKV, D, T] -> [B, nKV, L, T]
    if (hidden.defined()) scores = scores.masked_fill(hidden, -std::numeric_limits<double>::infinity());
    outs.push_back(at::matmul(at::softmax(scores, -1), v));  // [B, nKV, L, D]
  }
  return at::stack(outs, 2).view({B, nH, L, D});  // rep x [B, nKV, L, D] -> [B, nKV, rep, L, D] -> [B, nH, L, D]
#endif
}

}  // namespace

extern "C" {

ares_status *ares_gqa_attention(ares_tensor q, ares_tensor k, ares_tensor v, ares_tensor cos, ares_tensor sin,
                                int64_t rotary_dim, ares_tensor k_cache, ares_tensor v_cache, int64_t start,
                                ares_tensor mask, double scale, int64_t n_heads, int64_t n_kv_heads,
                                int64_t head_dim, ares_tensor *out) {
  return guard_out(out, [&] {
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads != 0)
      invalid("needs positive heads (" + std::to_string(n_heads) + "), KV heads (" + std::to_string(n_kv_heads) +
              ") dividing them and head dim (" + std::to_string(head_dim) + ")");
    if ((cos == nullptr) != (sin == nullptr)) invalid("cos and sin go together");
    if ((k_cache == nullptr) != (v_cache == nullptr)) invalid("the key and value caches go together");
    const auto &Q = ares_internal_get(q, "query");
    auto qh = heads(Q, n_heads, head_dim, "query");                                    // [B, nH, L, D]
    auto kh = heads(ares_internal_get(k, "key"), n_kv_heads, head_dim, "key");        // [B, nKV, L, D]
    auto vh = heads(ares_internal_get(v, "value"), n_kv_heads, head_dim, "value");    // [B, nKV, L, D]
    if (cos) {
      if (rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0)
        invalid("rotary dim " + std::to_string(rotary_dim) + " must be even and in (0, " +
                std::to_string(head_dim) + "]");
      const auto &C = ares_internal_get(cos, "cos");
      const auto &S = ares_internal_get(sin, "sin");
      qh = rotate(qh, C, S, rotary_dim, head_dim);
      kh = rotate(kh, C, S, rotary_dim, head_dim);
    }
    if (k_cache) {
      const auto &KC = ares_internal_get(k_cache, "key cache");
      const auto &VC = ares_internal_get(v_cache, "value cache");
      int64_t L = kh.size(2);
      if (KC.dim() != 4 || VC.sizes() != KC.sizes() || KC.size(0) != kh.size(0) || KC.size(1) != n_kv_heads ||
          KC.size(3) != head_dim)
        invalid("caches " + shape_str(KC) + ", " + shape_str(VC) + " do not match keys " + shape_str(kh));
      if (start < 0 || start + L > KC.size(2))
        invalid("cache full: " + std::to_string(start) + " + " + std::to_string(L) + " tokens exceed capacity " +
                std::to_string(KC.size(2)));
      {
        at::NoGradGuard no_grad;
        KC.narrow(2, start, L).copy_(kh);  // [B, nKV, capacity, D] -> [B, nKV, L, D] at columns [start, start+L)
        VC.narrow(2, start, L).copy_(vh);
      }
      kh = KC.narrow(2, 0, start + L);  // [B, nKV, capacity, D] -> [B, nKV, T, D], T = start + L
      vh = VC.narrow(2, 0, start + L);
    }
    int64_t rep = n_heads / n_kv_heads;
    at::Tensor m;
    if (mask) m = ares_internal_get(mask, "mask");
    auto o = grouped_attention(qh, kh, vh, m, scale, rep);  // [B, nH, L, D]
    // [B, nH, L, D] -> [B, L, nH, D] -> [B, L, nH*D]
    return o.transpose(1, 2).reshape({Q.size(0), Q.size(1), -1});
  });
}

ares_status *ares_gated_mlp(ares_tensor x, ares_tensor gate_w, ares_tensor up_w, ares_tensor down_w, int32_t act,
                            ares_tensor *out) {
  return guard_out(out, [&] {
    if (act != ARES_ACT_SILU && act != ARES_ACT_GELU && act != ARES_ACT_GELU_TANH)
      invalid("unknown activation " + std::to_string(act));
    const auto &X = ares_internal_get(x, "input");
    auto g = at::linear(X, ares_internal_get(gate_w, "gate weight"));
    switch (act) {
      case ARES_ACT_SILU: g = at::silu(g); break;
      case ARES_ACT_GELU: g = at::gelu(g, "none"); break;
      case ARES_ACT_GELU_TANH: g = at::gelu(g, "tanh"); break;
      default: invalid("unknown activation " + std::to_string(act));
    }
    auto u = at::linear(X, ares_internal_get(up_w, "up weight"));
    return at::linear(at::mul(g, u), ares_internal_get(down_w, "down weight"));
  });
}

ares_status *ares_rope_gather(ares_tensor cos_table, ares_tensor sin_table, ares_tensor pos, ares_tensor *cos,
                              ares_tensor *sin) {
  return guard_out2(cos, sin, [&] {
    const auto &P = ares_internal_get(pos, "positions");
    // [P, rd] at [B, L] -> [B, L, rd] -> [B, 1, L, rd]
    auto c = at::embedding(ares_internal_get(cos_table, "cos table"), P).unsqueeze(1);
    auto s = at::embedding(ares_internal_get(sin_table, "sin table"), P).unsqueeze(1);
    return std::make_pair(c, s);
  });
}

}  // extern "C"
