// kernels_test.cpp: runs the CUDA kernels of kernels/cuda under the host
// emulation (ares_cuda_emu.h) and holds their results to float64 references:
// the exact log-softmax for the log-sum-exp and gradient kernels, central
// finite differences of a float64 reward model for the reward backward. Built
// with the address and undefined-behaviour sanitizers by `make cuda-emu-test`
// (part of `make test`), so an out-of-bounds index in a kernel fails here.
//
// The shapes cover the kernels' branches: vectorised and scalar rows
// (aligned, misaligned, widths that are not multiples of the vector or block),
// every thread count threads_for picks, f32/f16/bf16 with f32 or matching
// parameters, ignored and out-of-range indices, more rows than one grid
// dimension takes, and the Bradley-Terry loss computed by the last block.
//
// What it cannot check is what needs the hardware: __expf's approximation,
// the GPU memory model, timing. engine/torch's TestFusedKernelsMatchComposed
// does that on a GPU.
#include <math.h>
#include <stdio.h>

#include <algorithm>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "ares_cuda.h"
#include "ares_cuda_emu.h"
#include "ares_fused.h"
#include "ares_torch.h"

namespace {

int failures = 0, checks = 0;

const char *dtype_name(int32_t d) {
  switch (d) {
    case ARES_F32: return "f32";
    case ARES_F16: return "f16";
    case ARES_BF16: return "bf16";
  }
  return "?";
}

// Relative tolerance of a value stored in dtype d after f32 arithmetic.
double rtol_of(int32_t d) {
  switch (d) {
    case ARES_F16: return 2e-3;
    case ARES_BF16: return 1e-2;
  }
  return 1e-4;
}

// A device buffer (host memory under the emulation) of n elements of dtype,
// 16-byte aligned or deliberately one element past alignment, allocated to
// the exact size so that the address sanitizer catches a read past its end.
class Buf {
 public:
  Buf(int32_t dtype, size_t n, bool misalign = false)
      : dtype_(dtype), n_(n), off_(misalign ? 1 : 0), mem_(alloc((n + off_) * esize())) {}
  void *data() { return mem_.get() + off_ * esize(); }
  void set(size_t i, double v) {
    char *p = static_cast<char *>(data()) + i * esize();
    if (dtype_ == ARES_F32) {
      float f = static_cast<float>(v);
      memcpy(p, &f, 4);
    } else {
      uint16_t b = dtype_ == ARES_F16 ? __float2half_rn(static_cast<float>(v)).bits
                                      : __float2bfloat16_rn(static_cast<float>(v)).bits;
      memcpy(p, &b, 2);
    }
  }
  double get(size_t i) {
    const char *p = static_cast<const char *>(data()) + i * esize();
    if (dtype_ == ARES_F32) {
      float f;
      memcpy(&f, p, 4);
      return f;
    }
    uint16_t b;
    memcpy(&b, p, 2);
    return dtype_ == ARES_F16 ? __half2float(__half{b}) : __bfloat162float(__nv_bfloat16{b});
  }
  // Stores v rounded to the dtype and returns the stored value.
  double put(size_t i, double v) {
    set(i, v);
    return get(i);
  }

 private:
  struct Free {
    void operator()(char *p) const { operator delete[](p, std::align_val_t(16)); }
  };
  static std::unique_ptr<char[], Free> alloc(size_t bytes) {
    return std::unique_ptr<char[], Free>(
        static_cast<char *>(operator new[](bytes > 0 ? bytes : 1, std::align_val_t(16))));
  }
  size_t esize() const { return dtype_ == ARES_F32 ? 4 : 2; }
  int32_t dtype_;
  size_t n_, off_;
  std::unique_ptr<char[], Free> mem_;
};

// Holds got to ref: |got - ref| <= rtol * (|ref| + 0.1 max|ref|) + abs_floor.
// NaN must meet NaN.
void expect_close(const std::string &what, const std::vector<double> &got,
                  const std::vector<double> &ref, double rtol, double abs_floor = 1e-7) {
  checks++;
  double scale = 0;
  for (double r : ref)
    if (!std::isnan(r)) scale = std::max(scale, fabs(r));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    if (std::isnan(ref[i]) || std::isnan(got[i])) {
      if (std::isnan(ref[i]) != std::isnan(got[i])) {
        fprintf(stderr, "FAIL %s: [%zu] = %g, want %g\n", what.c_str(), i, got[i], ref[i]);
        failures++;
        return;
      }
      continue;
    }
    const double r = fabs(got[i] - ref[i]) / (rtol * (fabs(ref[i]) + 0.1 * scale) + abs_floor);
    if (r > worst) worst = r, at = i;
  }
  if (worst > 1) {
    fprintf(stderr, "FAIL %s: [%zu] = %.9g, want %.9g (%.2f x tolerance)\n", what.c_str(), at,
            got[at], ref[at], worst);
    failures++;
  }
}

void expect(bool ok, const std::string &what) {
  checks++;
  if (!ok) {
    fprintf(stderr, "FAIL %s\n", what.c_str());
    failures++;
  }
}

// ---- chunked token log-probabilities -------------------------------------

struct LogProbCase {
  int32_t dtype;
  int64_t N, V, chunk;
  bool misalign;
};

void test_logprobs(const LogProbCase &c, std::mt19937_64 &rng) {
  const std::string name = std::string("logprobs ") + dtype_name(c.dtype) + " N=" +
                           std::to_string(c.N) + " V=" + std::to_string(c.V) +
                           " chunk=" + std::to_string(c.chunk) + (c.misalign ? " misaligned" : "");
  std::normal_distribution<double> normal(0, 3);
  std::uniform_int_distribution<int64_t> tok(0, c.V - 1);
  // The logits as the dtype holds them, plus a few masked (-inf) entries and
  // one large value that forces the running maximum to rescale.
  std::vector<double> x(c.N * c.V);
  Buf round(c.dtype, 1);
  for (auto &v : x) v = round.put(0, normal(rng));
  if (c.N > 1)
    for (int64_t v = 3; v < c.V; v += 7) x[1 * c.V + v] = -INFINITY;
  if (c.V > 2) x[(c.N - 1) * c.V + c.V / 2] = round.put(0, 40.0);
  std::vector<int64_t> targets(c.N);
  for (auto &t : targets) t = tok(rng);
  if (c.N > 1) targets[0] = -100;  // an ignored position
  targets[c.N - 1] = c.V - 1;
  if (c.N > 1 && c.V > 3) targets[1] = 3;  // a masked token: log p = -inf

  std::vector<double> lse_ref(c.N), logp_ref(c.N);
  for (int64_t n = 0; n < c.N; n++) {
    double mx = -INFINITY, s = 0;
    for (int64_t v = 0; v < c.V; v++) mx = std::max(mx, x[n * c.V + v]);
    for (int64_t v = 0; v < c.V; v++) s += exp(x[n * c.V + v] - mx);
    lse_ref[n] = mx + log(s);
    logp_ref[n] = targets[n] < 0 ? 0 : x[n * c.V + targets[n]] - lse_ref[n];
  }

  std::vector<float> m(c.N), s(c.N), tl(c.N), lse(c.N), logp(c.N);
  for (int64_t v0 = 0; v0 < c.V; v0 += c.chunk) {
    const int64_t C = std::min(c.chunk, c.V - v0);
    Buf chunk(c.dtype, c.N * C, c.misalign);
    for (int64_t n = 0; n < c.N; n++)
      for (int64_t j = 0; j < C; j++) chunk.set(n * C + j, x[n * c.V + v0 + j]);
    const int32_t flags = (v0 == 0 ? ARES_LSE_FIRST : 0) | (v0 + C >= c.V ? ARES_LSE_LAST : 0);
    const int32_t err = ares_cuda_lse_chunk(chunk.data(), c.N, C, v0, c.V, targets.data(), c.dtype,
                                            flags, m.data(), s.data(), tl.data(), lse.data(),
                                            logp.data(), nullptr);
    expect(err == 0, name + ": lse_chunk launch: " + cudaGetErrorString(cudaError_t(err)));
  }
  // -inf == -inf is exact; compare the finite ones with a tolerance.
  std::vector<double> got_logp(logp.begin(), logp.end()), got_lse(lse.begin(), lse.end());
  for (int64_t n = 0; n < c.N; n++)
    if (std::isinf(logp_ref[n])) {
      expect(got_logp[n] == logp_ref[n], name + ": log p of a masked token");
      got_logp[n] = logp_ref[n] = 0;
    }
  expect_close(name + ": lse", got_lse, lse_ref, 1e-6, 1e-6);
  expect_close(name + ": log p", got_logp, logp_ref, 1e-6, 1e-6);

  // Backward: each chunk rewritten in place into g * (onehot - softmax).
  std::vector<float> g(c.N);
  for (auto &v : g) v = static_cast<float>(normal(rng));
  for (int64_t v0 = 0; v0 < c.V; v0 += c.chunk) {
    const int64_t C = std::min(c.chunk, c.V - v0);
    Buf chunk(c.dtype, c.N * C, c.misalign);
    std::vector<double> ref(c.N * C);
    for (int64_t n = 0; n < c.N; n++)
      for (int64_t j = 0; j < C; j++) {
        const double xv = x[n * c.V + v0 + j];
        chunk.set(n * C + j, xv);
        const double gn = targets[n] < 0 ? 0 : g[n];
        ref[n * C + j] = gn * ((v0 + j == targets[n] ? 1 : 0) - exp(xv - lse_ref[n]));
      }
    const int32_t err = ares_cuda_logprob_grad_chunk(chunk.data(), c.N, C, v0, targets.data(),
                                                     lse.data(), g.data(), c.dtype, nullptr);
    expect(err == 0, name + ": grad_chunk launch: " + cudaGetErrorString(cudaError_t(err)));
    std::vector<double> got(c.N * C);
    for (size_t i = 0; i < got.size(); i++) got[i] = chunk.get(i);
    expect_close(name + ": gradient, chunk at " + std::to_string(v0), got, ref,
                 rtol_of(c.dtype), 1e-6);
  }
}

// The gradient kernel alone over more rows than one launch's grid.y takes
// (65535): the launcher splits them.
void test_gradient_rows(int64_t N, int64_t C, std::mt19937_64 &rng) {
  const std::string name = "logprob gradient over " + std::to_string(N) + " rows";
  std::normal_distribution<double> normal(0, 2);
  Buf chunk(ARES_F32, N * C);
  std::vector<double> x(N * C), ref(N * C);
  std::vector<int64_t> targets(N);
  std::vector<float> lse(N), g(N);
  for (int64_t n = 0; n < N; n++) {
    double s = 0;
    for (int64_t j = 0; j < C; j++) s += exp(x[n * C + j] = chunk.put(n * C + j, normal(rng)));
    lse[n] = static_cast<float>(log(s));
    g[n] = static_cast<float>(normal(rng));
    targets[n] = n % 5 == 4 ? -100 : n % C;
    for (int64_t j = 0; j < C; j++)
      ref[n * C + j] = targets[n] < 0 ? 0 : g[n] * ((j == targets[n]) - exp(x[n * C + j] - lse[n]));
  }
  const int32_t err = ares_cuda_logprob_grad_chunk(chunk.data(), N, C, 0, targets.data(),
                                                   lse.data(), g.data(), ARES_F32, nullptr);
  expect(err == 0, name + ": launch: " + cudaGetErrorString(cudaError_t(err)));
  std::vector<double> got(N * C);
  for (size_t i = 0; i < got.size(); i++) got[i] = chunk.get(i);
  expect_close(name, got, ref, 1e-5, 1e-6);
}

// ---- fused reward scoring -------------------------------------------------

struct RewardCase {
  int32_t dtype, pdtype, kind;
  bool bias;
  int64_t B, L, H, P;
  bool invalid_row;      // the last row's index is L: NaN score, no gradient
  bool no_grad_scores;   // grad_scores = NULL (the loss alone)
};

// The float64 model: score of one row x given the parameters.
double score_of(const double *x, const std::vector<double> &w, const std::vector<double> &bias,
                const std::vector<double> &head, int kind, double eps, int64_t H) {
  double mu = 0, ss = 0, out = 0;
  if (kind == ARES_NORM_LAYER) {
    for (int64_t i = 0; i < H; i++) mu += x[i];
    mu /= H;
  }
  for (int64_t i = 0; i < H; i++) ss += (x[i] - mu) * (x[i] - mu);
  const double rstd = 1 / sqrt(ss / H + eps);
  for (int64_t i = 0; i < H; i++)
    out += ((x[i] - mu) * rstd * w[i] + (bias.empty() ? 0 : bias[i])) * head[i];
  return out;
}

double softplus(double v) { return std::max(v, 0.0) + log1p(exp(-fabs(v))); }
double sigmoid(double v) { return 1 / (1 + exp(-v)); }

void test_reward(const RewardCase &c, std::mt19937_64 &rng) {
  const std::string name =
      std::string("reward ") + dtype_name(c.dtype) + "/" + dtype_name(c.pdtype) +
      (c.kind == ARES_NORM_LAYER ? " layer" : " rms") + (c.bias ? "+bias" : "") +
      " B=" + std::to_string(c.B) + " L=" + std::to_string(c.L) + " H=" + std::to_string(c.H) +
      " P=" + std::to_string(c.P) + (c.invalid_row ? " invalid-row" : "") +
      (c.no_grad_scores ? " loss-only" : "");
  const double eps = 1e-5;
  std::normal_distribution<double> normal(0, 1);
  std::uniform_int_distribution<int64_t> pos(0, c.L - 1);
  const int64_t B = c.B, L = c.L, H = c.H, P = c.P;

  Buf hidden(c.dtype, B * L * H);
  std::vector<double> hx(B * L * H);
  for (int64_t i = 0; i < B * L * H; i++) hx[i] = hidden.put(i, 0.5 + normal(rng));
  std::vector<int64_t> last(B);
  for (auto &l : last) l = pos(rng);
  if (c.invalid_row) last[B - 1] = L;
  Buf wb(c.pdtype, H), bb(c.pdtype, H), hb(c.pdtype, H);
  std::vector<double> w(H), bias, head(H);
  for (int64_t i = 0; i < H; i++) {
    w[i] = wb.put(i, 1 + 0.2 * normal(rng));
    head[i] = hb.put(i, 0.3 * normal(rng));
  }
  if (c.bias) {
    bias.resize(H);
    for (int64_t i = 0; i < H; i++) bias[i] = bb.put(i, 0.2 * normal(rng));
  }
  auto row = [&](int64_t b) { return hx.data() + (b * L + last[b]) * H; };
  auto valid = [&](int64_t b) { return last[b] >= 0 && last[b] < L; };

  // Forward, twice: the second launch reuses the counter the first reset.
  std::vector<double> score_ref(B);
  for (int64_t b = 0; b < B; b++)
    score_ref[b] = valid(b) ? score_of(row(b), w, bias, head, c.kind, eps, H) : NAN;
  double loss_ref = 0;
  for (int64_t i = 0; i < P; i++) loss_ref += softplus(score_ref[P + i] - score_ref[i]) / P;
  std::vector<float> scores(B);
  float loss = -1;
  unsigned counter = 0;
  for (int rep = 0; rep < 2; rep++) {
    const int32_t err = ares_cuda_reward_fwd(
        hidden.data(), last.data(), wb.data(), c.bias ? bb.data() : nullptr, hb.data(), B, L, H,
        c.dtype, c.pdtype, c.kind, static_cast<float>(eps), P, scores.data(),
        P > 0 ? &loss : nullptr, P > 0 ? &counter : nullptr, nullptr);
    expect(err == 0, name + ": forward launch");
    expect(counter == 0, name + ": the last block resets the counter");
    expect_close(name + ": scores", std::vector<double>(scores.begin(), scores.end()), score_ref,
                 1e-4, 1e-6);
    if (P > 0) expect_close(name + ": loss", {loss}, {loss_ref}, 1e-4, 1e-6);
  }

  // Backward of J = sum_b gs[b] score[b] + gl * loss.
  std::vector<float> gs(B);
  for (auto &v : gs) v = static_cast<float>(normal(rng));
  if (c.no_grad_scores) std::fill(gs.begin(), gs.end(), 0.f);
  const float gl = 0.7f;
  std::vector<double> gr_ref(B);
  for (int64_t b = 0; b < B; b++) {
    double g = gs[b];
    if (P > 0 && b < P) g -= gl / P * sigmoid(score_ref[b + P] - score_ref[b]);
    if (P > 0 && b >= P) g += gl / P * sigmoid(score_ref[b] - score_ref[b - P]);
    gr_ref[b] = valid(b) ? g : 0;
  }
  // dJ/dhidden by central differences of each selected row's score.
  std::vector<double> dh_ref(B * L * H, 0.0), gx_ref(B * H, 0.0);
  const double h = 1e-5;
  for (int64_t b = 0; b < B; b++) {
    if (!valid(b)) continue;
    std::vector<double> x(row(b), row(b) + H);
    for (int64_t i = 0; i < H; i++) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double up = score_of(x.data(), w, bias, head, c.kind, eps, H);
      x[i] = x0 - h;
      const double down = score_of(x.data(), w, bias, head, c.kind, eps, H);
      x[i] = x0;
      dh_ref[(b * L + last[b]) * H + i] = gr_ref[b] * (up - down) / (2 * h);
    }
    double mu = 0, ss = 0;
    if (c.kind == ARES_NORM_LAYER) {
      for (int64_t i = 0; i < H; i++) mu += x[i];
      mu /= H;
    }
    for (int64_t i = 0; i < H; i++) ss += (x[i] - mu) * (x[i] - mu);
    for (int64_t i = 0; i < H; i++) gx_ref[b * H + i] = gr_ref[b] * (x[i] - mu) / sqrt(ss / H + eps);
  }
  Buf dhidden(c.dtype, B * L * H);
  for (int64_t i = 0; i < B * L * H; i++) dhidden.set(i, 0);
  std::vector<float> gx(B * H), gr(B);
  int32_t err = ares_cuda_reward_bwd(hidden.data(), last.data(), wb.data(), hb.data(), B, L, H,
                                     c.dtype, c.pdtype, c.kind, static_cast<float>(eps), P,
                                     c.no_grad_scores ? nullptr : gs.data(),
                                     P > 0 ? &gl : nullptr, scores.data(), gx.data(), gr.data(),
                                     dhidden.data(), nullptr);
  expect(err == 0, name + ": backward launch");
  expect_close(name + ": row gradients", std::vector<double>(gr.begin(), gr.end()), gr_ref, 1e-5,
               1e-7);
  expect_close(name + ": gx", std::vector<double>(gx.begin(), gx.end()), gx_ref, 1e-4, 1e-6);
  std::vector<double> dh(B * L * H);
  for (int64_t i = 0; i < B * L * H; i++) dh[i] = dhidden.get(i);
  expect_close(name + ": input gradient", dh, dh_ref, rtol_of(c.dtype), 1e-6);

  // Parameter gradients by central differences of J (each parameter moves
  // every row's score).
  auto J = [&](const std::vector<double> &w_, const std::vector<double> &b_,
               const std::vector<double> &h_) {
    std::vector<double> s(B);
    double j = 0;
    for (int64_t b = 0; b < B; b++) {
      if (!valid(b)) continue;
      s[b] = score_of(row(b), w_, b_, h_, c.kind, eps, H);
      j += gs[b] * s[b];
    }
    for (int64_t i = 0; i < P; i++) j += gl * softplus(s[P + i] - s[i]) / P;
    return j;
  };
  auto fd = [&](std::vector<double> &p) {
    std::vector<double> out(H);
    for (int64_t i = 0; i < H; i++) {
      const double p0 = p[i];
      p[i] = p0 + h;
      const double up = J(w, bias, head);
      p[i] = p0 - h;
      const double down = J(w, bias, head);
      p[i] = p0;
      out[i] = (up - down) / (2 * h);
    }
    return out;
  };
  const std::vector<double> dw_ref = fd(w), dhead_ref = fd(head);
  const std::vector<double> dbias_ref = c.bias ? fd(bias) : std::vector<double>();
  Buf dw(c.pdtype, H), db(c.pdtype, H), dhd(c.pdtype, H);
  err = ares_cuda_reward_param_grads(gx.data(), gr.data(), wb.data(), c.bias ? bb.data() : nullptr,
                                     hb.data(), B, H, c.pdtype, dw.data(),
                                     c.bias ? db.data() : nullptr, dhd.data(), nullptr);
  expect(err == 0, name + ": parameter-gradient launch");
  auto read = [&](Buf &buf) {
    std::vector<double> v(H);
    for (int64_t i = 0; i < H; i++) v[i] = buf.get(i);
    return v;
  };
  // The finite differences carry their own error (about 1e-9 here), and the
  // kernels sum B*H f32 products: rtol of the parameter dtype, at least 1e-4.
  const double prt = std::max(1e-4, rtol_of(c.pdtype));
  expect_close(name + ": d norm weight", read(dw), dw_ref, prt, 1e-6);
  expect_close(name + ": d value head", read(dhd), dhead_ref, prt, 1e-6);
  if (c.bias) expect_close(name + ": d norm bias", read(db), dbias_ref, prt, 1e-6);
}

}  // namespace

int main() {
  std::mt19937_64 rng(20261124);

  // Log-probabilities: one chunk and many; vector rows (chunk a multiple of 8,
  // aligned), scalar rows (odd widths, misaligned buffers), a last chunk
  // narrower than the others, vocabularies below and above one block.
  for (int32_t dt : {ARES_F32, ARES_F16, ARES_BF16}) {
    test_logprobs({dt, 1, 1, 8192, false}, rng);
    test_logprobs({dt, 3, 7, 8192, false}, rng);
    test_logprobs({dt, 5, 1000, 64, false}, rng);
    test_logprobs({dt, 5, 1000, 64, true}, rng);
    test_logprobs({dt, 4, 4099, 1024, false}, rng);
    test_logprobs({dt, 6, 2053, 33, false}, rng);
  }
  // More rows than grid.y takes (65535): the gradient launcher splits them.
  test_gradient_rows(65537, 3, rng);

  // Reward scoring: every norm, parameter dtype pairing and thread count
  // (H <= 128: 64 threads, <= 512: 128, <= 2048: 256, above: 512), H not a
  // multiple of the block, pairs, an invalid index, the loss alone.
  const int32_t pairs[][2] = {{ARES_F32, ARES_F32}, {ARES_F16, ARES_F16}, {ARES_F16, ARES_F32},
                              {ARES_BF16, ARES_BF16}, {ARES_BF16, ARES_F32}};
  for (auto &p : pairs)
    for (int kind : {ARES_NORM_LAYER, ARES_NORM_RMS}) {
      const bool bias = kind == ARES_NORM_LAYER;
      test_reward({p[0], p[1], kind, bias, 4, 3, 96, 2, false, false}, rng);
      test_reward({p[0], p[1], kind, bias, 3, 5, 130, 0, true, false}, rng);
    }
  test_reward({ARES_F32, ARES_F32, ARES_NORM_LAYER, false, 2, 2, 1, 1, false, false}, rng);
  test_reward({ARES_F32, ARES_F32, ARES_NORM_RMS, false, 6, 4, 5, 3, false, true}, rng);
  test_reward({ARES_F32, ARES_F32, ARES_NORM_LAYER, true, 2, 2, 1000, 1, false, false}, rng);
  test_reward({ARES_BF16, ARES_F32, ARES_NORM_RMS, false, 2, 3, 2049, 1, false, false}, rng);
  test_reward({ARES_F32, ARES_F32, ARES_NORM_LAYER, true, 10, 3, 33, 5, false, true}, rng);

  if (failures > 0) {
    fprintf(stderr, "kernels under the CUDA emulation: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("kernels under the CUDA emulation: %d checks passed\n", checks);
  return 0;
}
