// ares_fused.cpp: the fused operations of kernels/include/ares_fused.h.
//
// Each op is a custom autograd Function (torch/csrc/autograd/custom_function.h,
// the same API in libtorch 1.13 and 2.x) whose forward and backward pick one
// of two implementations per call:
//  - the composed path: libtorch ops, on any device and dtype. It is the
//    reference the kernels are tested against and the CPU implementation.
//  - the kernel path: the CUDA kernels of kernels/cuda (launchers in
//    ares_cuda.h), for f32/f16/bf16 CUDA tensors, when the shim was built with
//    CUDA (ARES_WITH_CUDA) and the kernels are enabled. A test build
//    (ARES_KERNELS_EMU, `make shim-emu`) links the same kernels compiled for
//    the host emulation of kernels/cuda/emu instead and takes this path for
//    CPU tensors, so the code below runs end to end without a GPU.
// Handles and statuses are made through shim_internal.h, exactly as in
// ares_torch.cpp, so ares_live_tensors counts these results too.
#include "ares_fused.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "shim_internal.h"

#if defined(ARES_WITH_CUDA) && defined(ARES_KERNELS_EMU)
#error "ARES_WITH_CUDA and ARES_KERNELS_EMU exclude each other"
#endif
#if defined(ARES_WITH_CUDA) || defined(ARES_KERNELS_EMU)
#define ARES_KERNELS 1
#include "ares_cuda.h"
#endif
#ifdef ARES_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using namespace ares_shim;

std::atomic<int32_t> kernels_enabled{1};

bool is_float_type(at::ScalarType s) {
  return s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16;
}

// The type the fused ops accumulate and return in.
at::ScalarType acc_type(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

// True when this call runs the CUDA kernels for a tensor of this device/dtype.
bool use_kernels(const at::Tensor &t) {
#ifdef ARES_KERNELS
#ifdef ARES_WITH_CUDA
  const bool on_kernel_device = t.is_cuda();
#else
  const bool on_kernel_device = t.is_cpu();  // the emulated kernels read host memory
#endif
  auto s = t.scalar_type();
  return on_kernel_device && kernels_enabled.load(std::memory_order_relaxed) != 0 &&
         (s == at::kFloat || s == at::kHalf || s == at::kBFloat16);
#else
  (void)t;
  return false;
#endif
}

#ifdef ARES_KERNELS
int32_t ares_dtype(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return ARES_F32;
    case at::kHalf: return ARES_F16;
    case at::kBFloat16: return ARES_BF16;
    default: break;
  }
  invalid(std::string("no CUDA kernel for dtype ") + c10::toString(s));
}

void cuda_check(int32_t err, const char *what) {
  if (err == 0) return;
#ifdef ARES_WITH_CUDA
  throw std::runtime_error(std::string(what) + ": " +
                           cudaGetErrorString(static_cast<cudaError_t>(err)));
#else
  throw std::runtime_error(std::string(what) + ": CUDA error " + std::to_string(err));
#endif
}

void *stream_of(const at::Tensor &t) {
#ifdef ARES_WITH_CUDA
  return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
#else
  (void)t;
  return nullptr;
#endif
}

// Makes t's device current for the kernel launches of one scope.
struct KernelDevice {
#ifdef ARES_WITH_CUDA
  explicit KernelDevice(const at::Tensor &t) : guard(t.device()) {}
  c10::cuda::CUDAGuard guard;
#else
  explicit KernelDevice(const at::Tensor &) {}
#endif
};

// The kernels read parameters either in the hidden dtype or in f32.
at::Tensor kernel_param(const at::Tensor &p, at::ScalarType hidden_type) {
  if (!p.defined()) return p;
  auto q = (p.scalar_type() == hidden_type || p.scalar_type() == at::kFloat) ? p : p.to(at::kFloat);
  return q.contiguous();
}

// The reward op's tensors as its kernels read them, contiguous: the norm
// weight as kernel_param gives it, the bias and the value head in the
// weight's dtype.
struct RewardKernelInputs {
  at::Tensor h, last, w, b, head;
  RewardKernelInputs(const at::Tensor &hidden, const at::Tensor &last_, const at::Tensor &w_,
                     const at::Tensor &b_, const at::Tensor &head_)
      : h(hidden.contiguous()), last(last_.contiguous()), w(kernel_param(w_, hidden.scalar_type())) {
    auto as_w = [&](const at::Tensor &p) {
      auto q = kernel_param(p, w.scalar_type());
      return q.defined() ? q.to(w.scalar_type()) : q;
    };
    b = as_w(b_);
    head = as_w(head_);
  }
};
#endif

// ---- reward scoring ----------------------------------------------------------

struct RewardArgs {
  int64_t B, L, H;
};

RewardArgs check_reward(const at::Tensor &hidden, const at::Tensor &last, const at::Tensor &w,
                        const at::Tensor &b, int64_t kind, const at::Tensor &head,
                        int64_t n_pairs) {
  if (hidden.dim() != 3) invalid("hidden must be [B, L, H], got " + shape_str(hidden));
  if (!is_float_type(hidden.scalar_type())) invalid("hidden must be a floating-point tensor");
  RewardArgs a{hidden.size(0), hidden.size(1), hidden.size(2)};
  if (a.L == 0 || a.H == 0) invalid("hidden " + shape_str(hidden) + " has an empty dimension");
  if (last.dim() != 1 || last.size(0) != a.B || last.scalar_type() != at::kLong)
    invalid("last must be an int64 [B] = [" + std::to_string(a.B) + "] tensor, got " +
            shape_str(last) + " " + c10::toString(last.scalar_type()));
  if (kind != ARES_NORM_LAYER && kind != ARES_NORM_RMS)
    invalid("unknown norm kind " + std::to_string(kind));
  if (w.dim() != 1 || w.size(0) != a.H)
    invalid("norm weight must be [H] = [" + std::to_string(a.H) + "], got " + shape_str(w));
  if (b.defined()) {
    if (kind == ARES_NORM_RMS) invalid("an RMS norm takes no bias");
    if (b.dim() != 1 || b.size(0) != a.H)
      invalid("norm bias must be [H] = [" + std::to_string(a.H) + "], got " + shape_str(b));
  }
  if (head.numel() != a.H || !(head.dim() == 1 || (head.dim() == 2 && head.size(0) == 1)))
    invalid("value head must be [1, H] or [H] with H = " + std::to_string(a.H) + ", got " +
            shape_str(head));
  for (const at::Tensor *p : {&last, &w, &b, &head})
    if (p->defined() && p->device() != hidden.device())
      invalid("all tensors must be on " + hidden.device().str() + ", one is on " +
              p->device().str());
  if (n_pairs < 0) invalid("negative pair count");
  if (n_pairs > 0 && a.B != 2 * n_pairs)
    invalid("Bradley-Terry loss over " + std::to_string(n_pairs) + " pairs needs B = " +
            std::to_string(2 * n_pairs) + " rows, got " + std::to_string(a.B));
  return a;
}

// Composed path: the selected rows and their normalisation.
struct RewardRows {
  at::Tensor index;  // [B] flat row index b * L + last[b]
  at::Tensor xhat;   // [B, H] normalised rows (acc type)
  at::Tensor rstd;   // [B, 1]
};

// Rejects a last index outside [0, L). (The CUDA path skips this check, which
// would synchronise with the device: such a row's score is NaN.)
void check_last_range(const at::Tensor &last, const RewardArgs &a) {
  if (a.B == 0) return;
  auto lo = last.min().item<int64_t>(), hi = last.max().item<int64_t>();
  if (lo < 0 || hi >= a.L)
    invalid("last index out of range [0, " + std::to_string(a.L) + "): min " +
            std::to_string(lo) + ", max " + std::to_string(hi));
}

RewardRows reward_rows(const at::Tensor &hidden, const at::Tensor &last, int64_t kind, double eps,
                       const RewardArgs &a) {
  check_last_range(last, a);
  RewardRows r;
  r.index = at::arange(a.B, last.options()) * a.L + last;
  auto x = hidden.reshape({a.B * a.L, a.H}).index_select(0, r.index).to(acc_type(hidden.scalar_type()));
  if (kind == ARES_NORM_LAYER) {
    auto xc = x - x.mean(-1, true);
    r.rstd = at::rsqrt(xc.square().mean(-1, true) + eps);
    r.xhat = xc * r.rstd;
  } else {
    r.rstd = at::rsqrt(x.square().mean(-1, true) + eps);
    r.xhat = x * r.rstd;
  }
  return r;
}

at::Tensor bt_loss(const at::Tensor &scores, int64_t P) {
  // -log sigmoid(c - r) = softplus(r - c)
  return at::softplus(scores.narrow(0, P, P) - scores.narrow(0, 0, P)).mean();
}

struct RewardFn : public torch::autograd::Function<RewardFn> {
  // The bias is optional: autograd's argument extraction takes an undefined
  // tensor only as an empty optional.
  static variable_list forward(AutogradContext *ctx, at::Tensor hidden, at::Tensor last,
                               at::Tensor w, c10::optional<at::Tensor> bias, at::Tensor head,
                               int64_t kind, double eps, int64_t P) {
    at::Tensor b = bias.has_value() ? *bias : at::Tensor();
    RewardArgs a = check_reward(hidden, last, w, b, kind, head, P);
    auto acc = acc_type(hidden.scalar_type());
    at::Tensor scores, loss;
    if (use_kernels(hidden)) {
#ifdef ARES_KERNELS
      KernelDevice device(hidden);
      if (hidden.is_cpu()) check_last_range(last, a);
      RewardKernelInputs k(hidden, last, w, b, head);
      auto fopts = hidden.options().dtype(at::kFloat);
      scores = at::empty({a.B}, fopts);
      at::Tensor counter;
      if (P > 0) {
        loss = at::empty({}, fopts);
        counter = at::zeros({1}, hidden.options().dtype(at::kInt));
      }
      cuda_check(ares_cuda_reward_fwd(k.h.data_ptr(), k.last.data_ptr<int64_t>(), k.w.data_ptr(),
                                      k.b.defined() ? k.b.data_ptr() : nullptr, k.head.data_ptr(), a.B,
                                      a.L, a.H, ares_dtype(k.h.scalar_type()),
                                      ares_dtype(k.w.scalar_type()), static_cast<int32_t>(kind),
                                      static_cast<float>(eps), P, scores.data_ptr<float>(),
                                      P > 0 ? loss.data_ptr<float>() : nullptr,
                                      P > 0 ? static_cast<unsigned int *>(counter.data_ptr()) : nullptr,
                                      stream_of(hidden)),
                 "reward score kernel");
#endif
    } else {
      RewardRows r = reward_rows(hidden, last, kind, eps, a);
      auto y = r.xhat * w.to(acc);
      if (b.defined()) y = y + b.to(acc);
      scores = (y * head.reshape({a.H}).to(acc)).sum(-1);
      if (P > 0) loss = bt_loss(scores, P);
    }
    if (b.defined())
      ctx->save_for_backward({hidden, last, w, head, scores, b});
    else
      ctx->save_for_backward({hidden, last, w, head, scores});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["P"] = P;
    if (P > 0) return {scores, loss};
    return {scores};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &last = saved[1], &w = saved[2], &head = saved[3],
                     &scores = saved[4];
    at::Tensor b = saved.size() > 5 ? saved[5] : at::Tensor();
    int64_t kind = ctx->saved_data["kind"].toInt();
    double eps = ctx->saved_data["eps"].toDouble();
    int64_t P = ctx->saved_data["P"].toInt();
    RewardArgs a{hidden.size(0), hidden.size(1), hidden.size(2)};
    auto acc = acc_type(hidden.scalar_type());
    // needs_input_grad counts tensor inputs only: an absent bias has no edge.
    bool need_h = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(2),
         need_b = b.defined() && ctx->needs_input_grad(3),
         need_head = ctx->needs_input_grad(b.defined() ? 4 : 3);
    at::Tensor gs = grads[0].defined() ? grads[0].to(acc).contiguous() : at::Tensor();
    at::Tensor gl = (P > 0 && grads.size() > 1 && grads[1].defined())
                        ? grads[1].to(acc).reshape({1}).contiguous()
                        : at::Tensor();
    at::Tensor dh, dw, db, dhead;

    if (use_kernels(hidden)) {
#ifdef ARES_KERNELS
      KernelDevice device(hidden);
      RewardKernelInputs k(hidden, last, w, b, head);
      auto fopts = hidden.options().dtype(at::kFloat);
      auto gx = at::empty({a.B, a.H}, fopts);
      auto gr = at::empty({a.B}, fopts);
      if (need_h) dh = at::zeros(hidden.sizes(), hidden.options());
      void *stream = stream_of(hidden);
      cuda_check(ares_cuda_reward_bwd(k.h.data_ptr(), k.last.data_ptr<int64_t>(), k.w.data_ptr(),
                                      k.head.data_ptr(), a.B, a.L, a.H, ares_dtype(k.h.scalar_type()),
                                      ares_dtype(k.w.scalar_type()), static_cast<int32_t>(kind),
                                      static_cast<float>(eps), P,
                                      gs.defined() ? gs.data_ptr<float>() : nullptr,
                                      gl.defined() ? gl.data_ptr<float>() : nullptr,
                                      scores.data_ptr<float>(), gx.data_ptr<float>(),
                                      gr.data_ptr<float>(), need_h ? dh.data_ptr() : nullptr,
                                      stream),
                 "reward score backward kernel");
      if (need_w || need_b || need_head) {
        auto popts = k.w.options();
        at::Tensor dwk = need_w ? at::empty({a.H}, popts) : at::Tensor();
        at::Tensor dbk = need_b ? at::empty({a.H}, popts) : at::Tensor();
        at::Tensor dhk = need_head ? at::empty({a.H}, popts) : at::Tensor();
        cuda_check(ares_cuda_reward_param_grads(
                       gx.data_ptr<float>(), gr.data_ptr<float>(), k.w.data_ptr(),
                       k.b.defined() ? k.b.data_ptr() : nullptr, k.head.data_ptr(), a.B, a.H,
                       ares_dtype(k.w.scalar_type()), need_w ? dwk.data_ptr() : nullptr,
                       need_b ? dbk.data_ptr() : nullptr, need_head ? dhk.data_ptr() : nullptr,
                       stream),
                   "reward score parameter-gradient kernel");
        if (need_w) dw = dwk.to(w.scalar_type());
        if (need_b) db = dbk.to(b.scalar_type());
        if (need_head) dhead = dhk.to(head.scalar_type()).reshape(head.sizes());
      }
#endif
    } else {
      // Gradient of each row's score.
      at::Tensor g = gs.defined() ? gs.clone() : at::zeros({a.B}, scores.options());
      if (gl.defined()) {
        auto sig = at::sigmoid(scores.narrow(0, P, P) - scores.narrow(0, 0, P)) * (gl / P);
        g.narrow(0, 0, P).sub_(sig);
        g.narrow(0, P, P).add_(sig);
      }
      RewardRows r = reward_rows(hidden, last, kind, eps, a);
      auto hv = head.reshape({a.H}).to(acc), wv = w.to(acc);
      auto g2 = g.unsqueeze(1);
      if (need_h) {
        auto dxhat = g2 * (hv * wv);
        auto proj = r.xhat * (dxhat * r.xhat).mean(-1, true);
        auto dx = kind == ARES_NORM_LAYER ? r.rstd * (dxhat - dxhat.mean(-1, true) - proj)
                                          : r.rstd * (dxhat - proj);
        dh = at::zeros(hidden.sizes(), hidden.options());
        dh.view({a.B * a.L, a.H}).index_copy_(0, r.index, dx.to(hidden.scalar_type()));
      }
      auto S = (g2 * r.xhat).sum(0);  // sum_b g_b xhat_b
      auto G = g.sum();
      if (need_w) dw = (hv * S).to(w.scalar_type());
      if (need_b) db = (hv * G).to(b.scalar_type());
      if (need_head) {
        auto d = wv * S;
        if (b.defined()) d = d + b.to(acc) * G;
        dhead = d.to(head.scalar_type()).reshape(head.sizes());
      }
    }
    return {dh, at::Tensor(), dw, db, dhead, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---- token log-probabilities -------------------------------------------------

constexpr int64_t kDefaultChunk = 8192;

// The dtype the matmuls run in: the input's, except f16 on the CPU.
at::ScalarType mm_type(const at::Tensor &t) {
  return (t.is_cpu() && t.scalar_type() == at::kHalf) ? at::kFloat : t.scalar_type();
}

struct TokenLogProbFn : public torch::autograd::Function<TokenLogProbFn> {
  static variable_list forward(AutogradContext *ctx, at::Tensor hidden, at::Tensor weight,
                               at::Tensor targets, int64_t chunk) {
    if (hidden.dim() != 2) invalid("hidden must be [N, H], got " + shape_str(hidden));
    if (weight.dim() != 2) invalid("weight must be [V, H], got " + shape_str(weight));
    if (!is_float_type(hidden.scalar_type())) invalid("hidden must be a floating-point tensor");
    if (weight.scalar_type() != hidden.scalar_type())
      invalid(std::string("hidden and weight must share a dtype, got ") +
              c10::toString(hidden.scalar_type()) + " and " + c10::toString(weight.scalar_type()));
    int64_t N = hidden.size(0), H = hidden.size(1), V = weight.size(0);
    if (weight.size(1) != H)
      invalid("weight " + shape_str(weight) + " does not match hidden " + shape_str(hidden));
    if (V == 0) invalid("empty vocabulary");
    if (targets.dim() != 1 || targets.size(0) != N || targets.scalar_type() != at::kLong)
      invalid("targets must be an int64 [N] = [" + std::to_string(N) + "] tensor, got " +
              shape_str(targets) + " " + c10::toString(targets.scalar_type()));
    if (weight.device() != hidden.device() || targets.device() != hidden.device())
      invalid("hidden, weight and targets must be on one device");
    if (chunk <= 0) chunk = kDefaultChunk;
    auto acc = acc_type(hidden.scalar_type());
    auto aopts = hidden.options().dtype(acc);
    if (hidden.is_cpu() && N > 0) {
      auto hi = targets.max().item<int64_t>();
      if (hi >= V)
        invalid("target " + std::to_string(hi) + " outside the vocabulary of " +
                std::to_string(V));
    }
    auto mt = mm_type(hidden);
    auto h = hidden.to(mt);
    auto tg = targets.contiguous();
    at::Tensor lse, logp;
    if (N == 0) {
      lse = at::zeros({0}, aopts);
      logp = at::zeros({0}, aopts);
    } else if (use_kernels(hidden)) {
#ifdef ARES_KERNELS
      KernelDevice device(hidden);
      auto m = at::empty({N}, aopts), s = at::empty({N}, aopts), tl = at::empty({N}, aopts);
      lse = at::empty({N}, aopts);
      logp = at::empty({N}, aopts);
      void *stream = stream_of(hidden);
      for (int64_t v0 = 0; v0 < V; v0 += chunk) {
        int64_t C = std::min(chunk, V - v0);
        auto logits = at::mm(h, weight.narrow(0, v0, C).to(mt).t());  // [N, C], contiguous
        int32_t flags = (v0 == 0 ? ARES_LSE_FIRST : 0) | (v0 + C >= V ? ARES_LSE_LAST : 0);
        cuda_check(ares_cuda_lse_chunk(logits.data_ptr(), N, C, v0, V, tg.data_ptr<int64_t>(),
                                       ares_dtype(logits.scalar_type()), flags,
                                       m.data_ptr<float>(), s.data_ptr<float>(),
                                       tl.data_ptr<float>(), lse.data_ptr<float>(),
                                       logp.data_ptr<float>(), stream),
                   "log-sum-exp kernel");
      }
#endif
    } else {
      // Per chunk: one matmul and one fused log-sum-exp over [N, C], then
      // N-sized updates of the running log-sum-exp and the target's logit.
      lse = at::full({N}, -std::numeric_limits<double>::infinity(), aopts);
      auto tl = at::zeros({N}, aopts);
      for (int64_t v0 = 0; v0 < V; v0 += chunk) {
        int64_t C = std::min(chunk, V - v0);
        auto logits = at::mm(h, weight.narrow(0, v0, C).to(mt).t()).to(acc);
        lse = at::logaddexp(lse, at::logsumexp(logits, {1}));
        auto in = (tg >= v0) & (tg < v0 + C);
        auto col = (tg - v0).clamp(0, C - 1).unsqueeze(1);
        tl = at::where(in, logits.gather(1, col).squeeze(1), tl);
      }
      logp = at::where(tg >= 0, tl - lse, at::zeros_like(tl));
    }
    ctx->save_for_backward({hidden, weight, targets, lse});
    ctx->saved_data["chunk"] = chunk;
    return {logp};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &weight = saved[1], &targets = saved[2], &lse = saved[3];
    int64_t chunk = ctx->saved_data["chunk"].toInt();
    int64_t N = hidden.size(0), H = hidden.size(1), V = weight.size(0);
    bool need_h = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    at::Tensor dh, dw;
    if (!need_h && !need_w) return {dh, dw, at::Tensor(), at::Tensor()};
    auto acc = acc_type(hidden.scalar_type());
    auto mt = mm_type(hidden);
    auto tg = targets.contiguous();
    // Ignored positions send no gradient.
    auto g = at::where(tg >= 0, grads[0].to(acc), at::zeros({}, lse.options())).contiguous();
    auto h = hidden.to(mt);
    at::Tensor dh_acc = need_h ? at::zeros({N, H}, hidden.options().dtype(acc)) : at::Tensor();
    if (need_w) dw = at::empty({V, H}, weight.options());
    bool kern = use_kernels(hidden) && N > 0;
#ifdef ARES_KERNELS
    c10::optional<KernelDevice> device;
    if (kern) device.emplace(hidden);
#endif
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      int64_t C = std::min(chunk, V - v0);
      auto wc = weight.narrow(0, v0, C).to(mt);
      auto logits = at::mm(h, wc.t());  // [N, C] in mt, contiguous
      at::Tensor dl;
      if (kern) {
#ifdef ARES_KERNELS
        // In place: logits -> g * (onehot - softmax).
        cuda_check(ares_cuda_logprob_grad_chunk(logits.data_ptr(), N, C, v0,
                                                tg.data_ptr<int64_t>(), lse.data_ptr<float>(),
                                                g.data_ptr<float>(),
                                                ares_dtype(logits.scalar_type()),
                                                stream_of(hidden)),
                   "log-probability gradient kernel");
        dl = logits;
#endif
      } else {
        // In place on the chunk (a copy only when the matmul type differs
        // from the accumulation type): -g * exp(logits - lse), + g at the target.
        auto d = logits.to(acc);
        d.sub_(lse.unsqueeze(1)).exp_().mul_((-g).unsqueeze(1));
        auto in = (tg >= v0) & (tg < v0 + C);
        auto col = (tg - v0).clamp(0, C - 1).unsqueeze(1);
        d.scatter_add_(1, col, at::where(in, g, at::zeros_like(g)).unsqueeze(1));
        dl = d.to(mt);
      }
      if (need_h) {
        if (mt == acc)
          dh_acc.addmm_(dl, wc);
        else
          dh_acc.add_(at::mm(dl, wc));
      }
      if (need_w) {
        auto dst = dw.narrow(0, v0, C);
        if (mt == weight.scalar_type())
          at::mm_out(dst, dl.t(), h);
        else
          dst.copy_(at::mm(dl.t(), h));
      }
    }
    if (need_h) dh = dh_acc.to(hidden.scalar_type());
    return {dh, dw, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

int32_t ares_fused_built_with_kernels(void) {
#if defined(ARES_WITH_CUDA)
  return ARES_KERNELS_CUDA;
#elif defined(ARES_KERNELS_EMU)
  return ARES_KERNELS_HOST_EMU;
#else
  return ARES_KERNELS_NONE;
#endif
}

ares_status *ares_fused_set_kernels(int32_t enabled, int32_t *previous) {
  return guard([&] {
    int32_t prev = kernels_enabled.exchange(enabled != 0 ? 1 : 0);
    if (previous) *previous = prev;
  });
}

ares_status *ares_reward_score(ares_tensor hidden, ares_tensor last, ares_tensor norm_weight,
                               ares_tensor norm_bias, int32_t norm_kind, double eps,
                               ares_tensor head, int64_t n_pairs, ares_tensor *scores,
                               ares_tensor *loss) {
  return guard([&] {
    check_out(scores);
    if (n_pairs > 0) check_out(loss);
    const at::Tensor &h = ares_internal_get(hidden, "hidden");
    const at::Tensor &l = ares_internal_get(last, "last");
    const at::Tensor &w = ares_internal_get(norm_weight, "norm weight");
    const at::Tensor &hd = ares_internal_get(head, "head");
    if (!(eps >= 0)) invalid("eps must be non-negative");
    auto outs =
        RewardFn::apply(h, l, w, opt(norm_bias), hd, static_cast<int64_t>(norm_kind), eps, n_pairs);
    if (n_pairs > 0) {
      wrap_both(outs[0], outs[1], scores, loss);
    } else {
      *scores = ares_internal_wrap(outs[0]);
      if (loss) *loss = nullptr;
    }
  });
}

ares_status *ares_token_logprobs(ares_tensor hidden, ares_tensor weight, ares_tensor targets,
                                 int64_t chunk, int32_t mode, double clamp_min,
                                 ares_tensor *out) {
  return guard_out(out, [&] {
    if (mode != ARES_TLP_LOGPROB && mode != ARES_TLP_UNLIKELIHOOD)
      invalid("unknown token log-probability mode " + std::to_string(mode));
    const at::Tensor &h = ares_internal_get(hidden, "hidden");
    const at::Tensor &w = ares_internal_get(weight, "weight");
    const at::Tensor &t = ares_internal_get(targets, "targets");
    at::Tensor r = TokenLogProbFn::apply(h, w, t, chunk)[0];
    if (mode == ARES_TLP_UNLIKELIHOOD) {
      if (!(clamp_min > 0)) clamp_min = 1e-6;
      // -log(1 - p) with 1 - p = -expm1(log p), accurate for small p.
      auto ul = -at::log(at::clamp_min(-at::expm1(r), clamp_min));
      r = at::where(t >= 0, ul, at::zeros_like(ul));
    }
    return r;
  });
}

}  // extern "C"
