// ares_torch.cpp: the C++ shim over libtorch behind kernels/include/ares_torch.h.
//
// Every entry point runs its body through guard(), which applies the intra-op
// thread count to the calling OS thread (OpenMP keeps it per thread, and Go
// runs cgo calls on whichever thread the goroutine is on) and turns every C++
// exception into a status object.
#include "ares_torch.h"
#include "shim_internal.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef ARES_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

struct ares_status {
  int32_t code;
  std::string message;
};

// meta comes first: the handle points at it (ares_tensor_meta_of).
struct ares_tensor_s {
  ares_tensor_meta meta;
  at::Tensor t;
};
static_assert(std::is_standard_layout<ares_tensor_s>::value,
              "a tensor handle must be pointer-interconvertible with its metadata");

struct ares_generator_s {
  at::Generator g;
};

namespace {

std::atomic<int64_t> live_tensors{0};
// Desired intra-op thread count and its generation; each OS thread applies it
// lazily when its own generation is stale.
std::atomic<int32_t> desired_threads{0};
std::atomic<int32_t> threads_generation{0};
thread_local int32_t applied_generation = -1;

// OpenBLAS and OpenMP entry points, looked up in the loaded libraries so
// that the shim neither links them itself nor needs them (MKL or reference
// BLAS builds simply lack them). openblas_set_num_threads is process-wide.
struct native_threads_api {
  void (*openblas_set)(int) = nullptr;
  int (*openblas_get)() = nullptr;
  int (*openblas_parallel)() = nullptr;
  int (*omp_max)() = nullptr;
};

const native_threads_api &native_threads() {
  static const native_threads_api api = [] {
    native_threads_api a;
    a.openblas_set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    a.openblas_get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    a.openblas_parallel = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
    a.omp_max = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    return a;
  }();
  return api;
}

// OS threads that have entered the shim; one per run when a single thread
// drives libtorch (each calling thread gets its own OpenMP team).
std::atomic<int32_t> calling_threads{0};
thread_local bool counted_thread = false;

void sync_threads() {
  if (!counted_thread) {
    counted_thread = true;
    calling_threads.fetch_add(1, std::memory_order_relaxed);
  }
  int32_t gen = threads_generation.load(std::memory_order_relaxed);
  if (gen == applied_generation) return;
  int32_t n = desired_threads.load(std::memory_order_relaxed);
  if (n > 0) at::set_num_threads(n);
  applied_generation = gen;
}

// A status that needs no allocation, for when allocating one fails.
ares_status *oom_status() {
  static ares_status oom{ARES_ERR_OOM, "out of memory while reporting an error"};
  return &oom;
}

ares_status *make_status(int32_t code, std::string msg) {
  try {
    return new ares_status{code, std::move(msg)};
  } catch (...) {
    // Allocation of the status itself failed: return a static one that
    // ares_status_free recognises.
    return oom_status();
  }
}

using invalid_arg = ares_invalid_arg;
using namespace ares_shim;

bool looks_like_oom(const std::string &m) {
  return m.find("out of memory") != std::string::npos ||
         m.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos;
}

ares_status *status_from_current_exception() {
  try {
    throw;
  } catch (const c10::Error &e) {
    std::string m = e.what_without_backtrace();
    return make_status(looks_like_oom(m) ? ARES_ERR_OOM : ARES_ERR_TORCH, m);
  } catch (const invalid_arg &e) {
    return make_status(ARES_ERR_INVALID, e.what());
  } catch (const std::bad_alloc &) {
    return make_status(ARES_ERR_OOM, "out of memory (std::bad_alloc)");
  } catch (const std::exception &e) {
    std::string m = e.what();
    return make_status(looks_like_oom(m) ? ARES_ERR_OOM : ARES_ERR_INTERNAL, m);
  } catch (...) {
    return make_status(ARES_ERR_INTERNAL, "unknown C++ exception");
  }
}

const at::Tensor &T(ares_tensor h, const char *what = "tensor") {
  if (h == nullptr) throw invalid_arg(std::string("null ") + what + " handle");
  return h->t;
}

// The element type's code, or -1 when the engine does not support it.
int32_t meta_dtype(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return ARES_F32;
    case at::kDouble: return ARES_F64;
    case at::kHalf: return ARES_F16;
    case at::kBFloat16: return ARES_BF16;
    case at::kLong: return ARES_I64;
    case at::kInt: return ARES_I32;
    case at::kShort: return ARES_I16;
    case at::kChar: return ARES_I8;
    case at::kByte: return ARES_U8;
    case at::kBool: return ARES_BOOL;
    default: return -1;
  }
}

ares_tensor wrap(at::Tensor t) {
  ares_tensor_meta m{-1, ARES_CPU, -1, 0, {}};
  if (t.defined()) {
    m.dtype = meta_dtype(t.scalar_type());
    m.device_kind = t.device().is_cuda() ? ARES_CUDA : ARES_CPU;
    m.device_index = t.device().has_index() ? t.device().index() : -1;
    m.ndim = static_cast<int32_t>(t.dim());
    if (m.ndim <= ARES_META_DIMS)
      for (int32_t i = 0; i < m.ndim; i++) m.shape[i] = t.size(i);
  }
  auto *h = new ares_tensor_s{m, std::move(t)};
  live_tensors.fetch_add(1, std::memory_order_relaxed);
  return h;
}

at::ScalarType to_scalar_type(int32_t d) {
  switch (d) {
    case ARES_F32: return at::kFloat;
    case ARES_F64: return at::kDouble;
    case ARES_F16: return at::kHalf;
    case ARES_BF16: return at::kBFloat16;
    case ARES_I64: return at::kLong;
    case ARES_I32: return at::kInt;
    case ARES_I16: return at::kShort;
    case ARES_I8: return at::kChar;
    case ARES_U8: return at::kByte;
    case ARES_BOOL: return at::kBool;
  }
  throw invalid_arg("unknown dtype code " + std::to_string(d));
}

int32_t from_scalar_type(at::ScalarType s) {
  int32_t d = meta_dtype(s);
  if (d < 0) throw invalid_arg(std::string("dtype not supported by the engine: ") + c10::toString(s));
  return d;
}

at::Device to_device(int32_t kind, int32_t index) {
  if (index < -1) throw invalid_arg("device index " + std::to_string(index) + " is negative");
  switch (kind) {
    case ARES_CPU:
      return at::Device(at::kCPU);
    case ARES_CUDA:
      if (!at::hasCUDA())
        throw invalid_arg("CUDA device requested but libtorch has no CUDA support or no GPU");
      return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw invalid_arg("unknown device kind " + std::to_string(kind));
}

at::TensorOptions options(int32_t dtype, int32_t device_kind, int32_t device_index) {
  return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(device_kind, device_index));
}

std::vector<int64_t> dims_of(const int64_t *p, int32_t n) {
  if (n < 0) throw invalid_arg("negative dimension count " + std::to_string(n));
  if (n > 0 && p == nullptr) throw invalid_arg("null dimension array");
  return std::vector<int64_t>(p, p + n);
}

void copy_string(const std::string &s, char *buf, int64_t len) {
  if (buf == nullptr || len <= 0) throw invalid_arg("null or empty string buffer");
  size_t n = std::min<size_t>(s.size(), static_cast<size_t>(len - 1));
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
}

// The tensors of a handle array (cat, stack).
std::vector<at::Tensor> tensor_list(const ares_tensor *ts, int32_t n) {
  if (n <= 0) throw invalid_arg("needs at least one tensor");
  if (ts == nullptr) throw invalid_arg("null tensor array");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int32_t i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

c10::optional<at::Generator> gen_of(ares_generator g) {
  if (g == nullptr) return c10::nullopt;
  return g->g;
}

// softmax(q k^T * scale + mask) v from separate libtorch ops (libtorch
// before 2.1): q [.., Lq, D], k, v [.., Lk, D] -> [.., Lq, D].
at::Tensor attention_composed(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                              const at::Tensor &mask, bool is_causal, double scale) {
  auto scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // [.., Lq, D] @ [.., D, Lk] -> [.., Lq, Lk]
  if (is_causal) {
    int64_t lq = q.size(-2), lk = k.size(-2);
    auto causal = at::ones({lq, lk}, q.options().dtype(at::kBool)).tril(lk - lq);
    scores = scores.masked_fill(causal.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask.defined()) {
    scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), v);
}

}  // namespace

// ---- internal helpers for the other translation units (shim_internal.h) -----

ares_tensor ares_internal_wrap(at::Tensor t) { return wrap(std::move(t)); }
const at::Tensor &ares_internal_get(ares_tensor h, const char *what) { return T(h, what); }
ares_status *ares_internal_status(int32_t code, const std::string &msg) {
  return make_status(code, msg);
}
ares_status *ares_internal_current_exception_status() { return status_from_current_exception(); }
void ares_internal_sync_threads() { sync_threads(); }

at::Tensor ares_internal_attention(const at::Tensor &Q, const at::Tensor &K, const at::Tensor &V,
                                   const at::Tensor &mask, bool is_causal, double scale) {
  if (Q.dim() < 2) throw invalid_arg("query needs at least 2 dimensions");
  double s = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(Q.size(-1)));
  at::Tensor m = mask;
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 1 || TORCH_VERSION_MAJOR >= 3
  // libtorch's causal flag aligns the mask to the top-left corner; with a
  // KV cache (Lq < Lk) we need bottom-right alignment, so build the mask.
  if (is_causal && Q.size(-2) != K.size(-2)) {
    int64_t lq = Q.size(-2), lk = K.size(-2);
    auto causal = at::ones({lq, lk}, Q.options().dtype(at::kBool)).tril(lk - lq);
    m = m.defined() ? at::logical_and(m, causal) : causal;
    is_causal = false;
  }
  c10::optional<at::Tensor> om;
  if (m.defined()) om = m;
  return at::scaled_dot_product_attention(Q, K, V, om, 0.0, is_causal, s);
#else
  return attention_composed(Q, K, V, m, is_causal, s);
#endif
}

extern "C" {

int32_t ares_status_code(const ares_status *s) { return s ? s->code : ARES_OK; }
const char *ares_status_message(const ares_status *s) { return s ? s->message.c_str() : ""; }
void ares_status_free(ares_status *s) {
  if (s == nullptr || s == oom_status()) return;
  delete s;
}

// ---- library ----------------------------------------------------------------

ares_status *ares_version_compiled(char *buf, int64_t len) {
  return guard([&] { copy_string(TORCH_VERSION, buf, len); });
}

ares_status *ares_version_runtime(char *buf, int64_t len) {
  return guard([&] {
    // The loaded libtorch reports its version in its build configuration.
    std::string cfg = at::show_config();
    std::string key = "TORCH_VERSION=";
    auto pos = cfg.find(key);
    std::string v = "unknown";
    if (pos != std::string::npos) {
      auto end = cfg.find_first_of(", \n", pos + key.size());
      v = cfg.substr(pos + key.size(), end - pos - key.size());
    }
    copy_string(v, buf, len);
  });
}

ares_status *ares_set_num_threads(int32_t n) {
  return guard([&] {
    if (n <= 0) throw invalid_arg("thread count must be positive, got " + std::to_string(n));
    desired_threads.store(n);
    threads_generation.fetch_add(1);
    sync_threads();
    // libtorch sets OpenMP's (and MKL's) count but not OpenBLAS's, whose
    // pthread pool would otherwise keep one worker per CPU busy-yielding
    // beside the OpenMP team.
    if (auto f = native_threads().openblas_set) f(n);
  });
}

ares_status *ares_set_blas_threads(int32_t n) {
  return guard([&] {
    if (n <= 0) throw invalid_arg("BLAS thread count must be positive, got " + std::to_string(n));
    if (auto f = native_threads().openblas_set) f(n);
  });
}

ares_status *ares_thread_info(int32_t *intra_op, int32_t *openmp, int32_t *openblas,
                              int32_t *openblas_parallel) {
  return guard([&] {
    check_out(intra_op);
    check_out(openmp);
    check_out(openblas);
    check_out(openblas_parallel);
    const auto &api = native_threads();
    *intra_op = at::get_num_threads();
    *openmp = api.omp_max ? api.omp_max() : -1;
    *openblas = api.openblas_get ? api.openblas_get() : -1;
    *openblas_parallel = api.openblas_parallel ? api.openblas_parallel() : -1;
  });
}

int32_t ares_calling_threads(void) { return calling_threads.load(std::memory_order_relaxed); }

ares_status *ares_get_num_threads(int32_t *n) {
  return guard([&] {
    check_out(n);
    *n = at::get_num_threads();
  });
}

ares_status *ares_manual_seed(uint64_t seed) {
  return guard([&] {
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(seed);
    }
#ifdef ARES_WITH_CUDA
    for (int i = 0; i < static_cast<int>(at::cuda::device_count()); i++) {
      auto gen = at::cuda::detail::getDefaultCUDAGenerator(i);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(seed);
    }
#endif
  });
}

int64_t ares_live_tensors(void) { return live_tensors.load(); }

int32_t ares_built_with_cuda(void) {
#ifdef ARES_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

ares_status *ares_cuda_device_count(int32_t *n) {
  return guard([&] {
    check_out(n);
    *n = 0;
#ifdef ARES_WITH_CUDA
    *n = static_cast<int32_t>(at::cuda::device_count());
#endif
  });
}

ares_status *ares_cuda_device_name(int32_t index, char *buf, int64_t len) {
  return guard([&] {
#ifdef ARES_WITH_CUDA
    if (index < 0 || index >= static_cast<int32_t>(at::cuda::device_count()))
      throw invalid_arg("no CUDA device " + std::to_string(index));
    copy_string(at::cuda::getDeviceProperties(index)->name, buf, len);
#else
    (void)index; (void)buf; (void)len;
    throw invalid_arg("the shim was built without CUDA");
#endif
  });
}

ares_status *ares_synchronize(int32_t kind, int32_t index) {
  return guard([&] {
    at::Device d = to_device(kind, index);
#ifdef ARES_WITH_CUDA
    if (d.is_cuda()) {
      c10::cuda::device_synchronize();
      (void)d;
    }
#else
    (void)d;
#endif
  });
}

ares_status *ares_cuda_memory(int32_t index, int64_t *allocated, int64_t *reserved,
                              int64_t *peak_allocated) {
  return guard([&] {
    check_out(allocated); check_out(reserved); check_out(peak_allocated);
#ifdef ARES_WITH_CUDA
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    using c10::cuda::CUDACachingAllocator::StatType;
    auto agg = static_cast<size_t>(StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[agg].current;
    *reserved = stats.reserved_bytes[agg].current;
    *peak_allocated = stats.allocated_bytes[agg].peak;
#else
    (void)index;
    throw invalid_arg("the shim was built without CUDA");
#endif
  });
}

ares_status *ares_cuda_reset_peak(int32_t index) {
  return guard([&] {
#ifdef ARES_WITH_CUDA
    c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#else
    (void)index;
    throw invalid_arg("the shim was built without CUDA");
#endif
  });
}

ares_status *ares_cuda_empty_cache(void) {
  return guard([&] {
#ifdef ARES_WITH_CUDA
    c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  });
}

ares_status *ares_set_grad_enabled(int32_t enabled, int32_t *previous) {
  return guard([&] {
    if (previous) *previous = at::GradMode::is_enabled() ? 1 : 0;
    if (enabled >= 0) at::GradMode::set_enabled(enabled != 0);
  });
}

// ---- tensors: lifetime and inspection ---------------------------------------

void ares_tensor_free(ares_tensor t) {
  try {
    if (t == nullptr) return;
    delete t;
    live_tensors.fetch_sub(1, std::memory_order_relaxed);
  } catch (...) {
    // A destructor that throws has nowhere to report to; the handle is gone.
  }
}

void ares_tensor_free_many(ares_tensor *ts, int64_t n) {
  if (ts == nullptr) return;
  for (int64_t i = 0; i < n; i++) ares_tensor_free(ts[i]);
}

ares_status *ares_tensor_info(ares_tensor t, int32_t *dtype, int32_t *device_kind,
                              int32_t *device_index, int32_t *ndim) {
  return guard([&] {
    const auto &x = T(t);
    check_out(dtype); check_out(device_kind); check_out(device_index); check_out(ndim);
    *dtype = from_scalar_type(x.scalar_type());
    *device_kind = x.device().is_cuda() ? ARES_CUDA : ARES_CPU;
    *device_index = x.device().has_index() ? x.device().index() : -1;
    *ndim = static_cast<int32_t>(x.dim());
  });
}

ares_status *ares_tensor_shape(ares_tensor t, int64_t *shape, int32_t ndim) {
  return guard([&] {
    const auto &x = T(t);
    if (ndim != x.dim())
      throw invalid_arg("shape buffer holds " + std::to_string(ndim) + " dims, tensor has " +
                        std::to_string(x.dim()));
    for (int32_t i = 0; i < ndim; i++) shape[i] = x.size(i);
  });
}

ares_status *ares_tensor_item(ares_tensor t, double *value) {
  return guard([&] {
    check_out(value);
    *value = T(t).item<double>();
  });
}

// ---- creation ---------------------------------------------------------------

ares_status *ares_from_data(const void *data, int64_t nbytes, int32_t dtype,
                            const int64_t *shape, int32_t ndim, int32_t device_kind,
                            int32_t device_index, ares_tensor *out) {
  return guard_out(out, [&] {
    auto st = to_scalar_type(dtype);
    auto dims = dims_of(shape, ndim);
    int64_t numel = 1;
    for (auto d : dims) {
      if (d < 0) throw invalid_arg("negative dimension in shape");
      numel *= d;
    }
    int64_t want = numel * static_cast<int64_t>(c10::elementSize(st));
    if (want != nbytes)
      throw invalid_arg("data holds " + std::to_string(nbytes) + " bytes, shape needs " +
                        std::to_string(want));
    auto dev = to_device(device_kind, device_index);
    auto t = at::empty(dims, at::TensorOptions().dtype(st));
    if (nbytes > 0) {
      if (data == nullptr) throw invalid_arg("null data pointer");
      std::memcpy(t.data_ptr(), data, static_cast<size_t>(nbytes));
    }
    return dev.is_cpu() ? t : t.to(dev);
  });
}

ares_status *ares_to_data(ares_tensor t, void *data, int64_t nbytes) {
  return guard([&] {
    auto x = T(t).detach().to(at::kCPU).contiguous();
    int64_t have = x.numel() * static_cast<int64_t>(x.element_size());
    if (have != nbytes)
      throw invalid_arg("tensor holds " + std::to_string(have) + " bytes, buffer has " +
                        std::to_string(nbytes));
    if (nbytes > 0) {
      if (data == nullptr) throw invalid_arg("null data pointer");
      std::memcpy(data, x.data_ptr(), static_cast<size_t>(nbytes));
    }
  });
}

ares_status *ares_full(const int64_t *shape, int32_t ndim, double value, int32_t dtype,
                       int32_t device_kind, int32_t device_index, ares_tensor *out) {
  return guard_out(out, [&] {
    return at::full(dims_of(shape, ndim), value, options(dtype, device_kind, device_index));
  });
}

ares_status *ares_arange(double start, double end, double step, int32_t dtype,
                         int32_t device_kind, int32_t device_index, ares_tensor *out) {
  return guard_out(out, [&] {
    return at::arange(start, end, step, options(dtype, device_kind, device_index));
  });
}

ares_status *ares_random(const int64_t *shape, int32_t ndim, int32_t normal, int32_t dtype,
                         int32_t device_kind, int32_t device_index, ares_generator gen,
                         ares_tensor *out) {
  return guard_out(out, [&] {
    auto opts = options(dtype, device_kind, device_index);
    auto dims = dims_of(shape, ndim);
    return normal ? at::randn(dims, gen_of(gen), opts) : at::rand(dims, gen_of(gen), opts);
  });
}

// ---- generators -------------------------------------------------------------

ares_status *ares_generator_new(uint64_t seed, int32_t device_kind, int32_t device_index,
                                ares_generator *out) {
  return guard([&] {
    check_out(out);
    auto dev = to_device(device_kind, device_index);
    at::Generator g;
    if (dev.is_cpu()) {
      g = at::detail::createCPUGenerator(seed);
    } else {
#ifdef ARES_WITH_CUDA
      g = at::cuda::detail::createCUDAGenerator(dev.has_index() ? dev.index() : -1);
      g.set_current_seed(seed);
#else
      throw invalid_arg("the shim was built without CUDA");
#endif
    }
    *out = new ares_generator_s{std::move(g)};
  });
}

void ares_generator_free(ares_generator g) {
  try {
    delete g;
  } catch (...) {
  }
}

ares_status *ares_generator_get_state(ares_generator g, ares_tensor *out) {
  return guard_out(out, [&] {
    if (g == nullptr) throw invalid_arg("null generator handle");
    std::lock_guard<std::mutex> lock(g->g.mutex());
    return g->g.get_state();
  });
}

ares_status *ares_generator_set_state(ares_generator g, ares_tensor state) {
  return guard([&] {
    if (g == nullptr) throw invalid_arg("null generator handle");
    const auto &s = T(state, "state");
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_state(s);
  });
}

// ---- element-wise and matrix ops --------------------------------------------

ares_status *ares_unary(int32_t op, ares_tensor a, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &x = T(a);
    switch (op) {
      case ARES_U_NEG: return at::neg(x);
      case ARES_U_EXP: return at::exp(x);
      case ARES_U_LOG: return at::log(x);
      case ARES_U_SQRT: return at::sqrt(x);
      case ARES_U_RSQRT: return at::rsqrt(x);
      case ARES_U_ABS: return at::abs(x);
      case ARES_U_SIGMOID: return at::sigmoid(x);
      case ARES_U_LOGSIGMOID: return at::log_sigmoid(x);
      case ARES_U_TANH: return at::tanh(x);
      case ARES_U_RELU: return at::relu(x);
      case ARES_U_SILU: return at::silu(x);
      case ARES_U_GELU: return at::gelu(x, "none");
      case ARES_U_GELU_TANH: return at::gelu(x, "tanh");
      case ARES_U_SIN: return at::sin(x);
      case ARES_U_COS: return at::cos(x);
      case ARES_U_CONTIGUOUS: return x.contiguous();
      case ARES_U_DETACH: return x.detach();
      case ARES_U_CLONE: return x.clone();
      case ARES_U_ISFINITE: return at::isfinite(x);
      case ARES_U_LOGICAL_NOT: return at::logical_not(x);
      case ARES_U_LOG1P: return at::log1p(x);
      case ARES_U_SQUARE: return at::square(x);
      default: throw invalid_arg("unknown unary op code " + std::to_string(op));
    }
  });
}

ares_status *ares_binary(int32_t op, ares_tensor a, ares_tensor b, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &x = T(a, "first operand");
    const auto &y = T(b, "second operand");
    switch (op) {
      case ARES_B_ADD: return at::add(x, y);
      case ARES_B_SUB: return at::sub(x, y);
      case ARES_B_MUL: return at::mul(x, y);
      case ARES_B_DIV: return at::div(x, y);
      case ARES_B_POW: return at::pow(x, y);
      case ARES_B_MAXIMUM: return at::maximum(x, y);
      case ARES_B_MINIMUM: return at::minimum(x, y);
      case ARES_B_EQ: return at::eq(x, y);
      case ARES_B_NE: return at::ne(x, y);
      case ARES_B_LT: return at::lt(x, y);
      case ARES_B_LE: return at::le(x, y);
      case ARES_B_GT: return at::gt(x, y);
      case ARES_B_GE: return at::ge(x, y);
      case ARES_B_LOGICAL_AND: return at::logical_and(x, y);
      case ARES_B_LOGICAL_OR: return at::logical_or(x, y);
      case ARES_B_MATMUL: return at::matmul(x, y);
      default: throw invalid_arg("unknown binary op code " + std::to_string(op));
    }
  });
}

ares_status *ares_binary_scalar(int32_t op, ares_tensor a, double b, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &x = T(a);
    at::Scalar s(b);
    switch (op) {
      case ARES_B_ADD: return at::add(x, s);
      case ARES_B_SUB: return at::sub(x, s);
      case ARES_B_MUL: return at::mul(x, s);
      case ARES_B_DIV: return at::div(x, s);
      case ARES_B_POW: return at::pow(x, s);
      case ARES_B_MAXIMUM: return at::clamp_min(x, s);
      case ARES_B_MINIMUM: return at::clamp_max(x, s);
      case ARES_B_EQ: return at::eq(x, s);
      case ARES_B_NE: return at::ne(x, s);
      case ARES_B_LT: return at::lt(x, s);
      case ARES_B_LE: return at::le(x, s);
      case ARES_B_GT: return at::gt(x, s);
      case ARES_B_GE: return at::ge(x, s);
      default: throw invalid_arg("op code " + std::to_string(op) + " takes no scalar operand");
    }
  });
}

ares_status *ares_rsub_scalar(double a, ares_tensor b, ares_tensor *out) {
  return guard_out(out, [&] { return at::rsub(T(b), at::Scalar(a)); });
}

// ---- reductions -------------------------------------------------------------

ares_status *ares_reduce(int32_t op, ares_tensor a, const int64_t *dims, int32_t ndims,
                         int32_t keepdim, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &x = T(a);
    auto d = dims_of(dims, ndims);
    bool all = d.empty();
    bool kd = keepdim != 0;
    switch (op) {
      case ARES_R_SUM: return all ? at::sum(x) : at::sum(x, d, kd);
      case ARES_R_MEAN: return all ? at::mean(x) : at::mean(x, d, kd);
      case ARES_R_AMAX: return at::amax(x, d, kd);
      case ARES_R_AMIN: return at::amin(x, d, kd);
      case ARES_R_LOGSUMEXP:
        if (all) throw invalid_arg("logsumexp needs at least one dimension");
        return at::logsumexp(x, d, kd);
      case ARES_R_ALL:
        if (all) return at::all(x);
        if (d.size() != 1) throw invalid_arg("all reduces one dimension at a time");
        return at::all(x, d[0], kd);
      case ARES_R_ANY:
        if (all) return at::any(x);
        if (d.size() != 1) throw invalid_arg("any reduces one dimension at a time");
        return at::any(x, d[0], kd);
      default: throw invalid_arg("unknown reduction op code " + std::to_string(op));
    }
  });
}

ares_status *ares_max(ares_tensor a, int64_t dim, int32_t keepdim, ares_tensor *values,
                      ares_tensor *indices) {
  return guard_out2(values, indices, [&] { return at::max(T(a), dim, keepdim != 0); });
}

ares_status *ares_argmax(ares_tensor a, int64_t dim, int32_t keepdim, ares_tensor *out) {
  return guard_out(out, [&] { return at::argmax(T(a), dim, keepdim != 0); });
}

ares_status *ares_softmax(ares_tensor a, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return at::softmax(T(a), dim); });
}

ares_status *ares_log_softmax(ares_tensor a, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return at::log_softmax(T(a), dim); });
}

ares_status *ares_cumsum(ares_tensor a, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return at::cumsum(T(a), dim); });
}

ares_status *ares_topk(ares_tensor a, int64_t k, int64_t dim, int32_t largest,
                       ares_tensor *values, ares_tensor *indices) {
  return guard_out2(values, indices, [&] { return at::topk(T(a), k, dim, largest != 0, true); });
}

ares_status *ares_sort(ares_tensor a, int64_t dim, int32_t descending, ares_tensor *values,
                       ares_tensor *indices) {
  return guard_out2(values, indices, [&] { return at::sort(T(a), dim, descending != 0); });
}

ares_status *ares_multinomial(ares_tensor probs, int64_t n, int32_t replacement,
                              ares_generator gen, ares_tensor *out) {
  return guard_out(out, [&] { return at::multinomial(T(probs), n, replacement != 0, gen_of(gen)); });
}

// ---- shape and indexing -----------------------------------------------------

ares_status *ares_reshape(ares_tensor a, const int64_t *shape, int32_t ndim, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).reshape(dims_of(shape, ndim)); });
}

ares_status *ares_expand(ares_tensor a, const int64_t *shape, int32_t ndim, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).expand(dims_of(shape, ndim)); });
}

ares_status *ares_permute(ares_tensor a, const int64_t *dims, int32_t ndim, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).permute(dims_of(dims, ndim)); });
}

ares_status *ares_transpose(ares_tensor a, int64_t d0, int64_t d1, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).transpose(d0, d1); });
}

ares_status *ares_narrow(ares_tensor a, int64_t dim, int64_t start, int64_t length,
                         ares_tensor *out) {
  return guard_out(out, [&] { return T(a).narrow(dim, start, length); });
}

ares_status *ares_unsqueeze(ares_tensor a, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).unsqueeze(dim); });
}

ares_status *ares_squeeze(ares_tensor a, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return T(a).squeeze(dim); });
}

ares_status *ares_cat(const ares_tensor *ts, int32_t n, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return at::cat(tensor_list(ts, n), dim); });
}

ares_status *ares_stack(const ares_tensor *ts, int32_t n, int64_t dim, ares_tensor *out) {
  return guard_out(out, [&] { return at::stack(tensor_list(ts, n), dim); });
}

ares_status *ares_index_select(ares_tensor a, int64_t dim, ares_tensor index, ares_tensor *out) {
  return guard_out(out, [&] { return at::index_select(T(a), dim, T(index, "index")); });
}

ares_status *ares_gather(ares_tensor a, int64_t dim, ares_tensor index, ares_tensor *out) {
  return guard_out(out, [&] { return at::gather(T(a), dim, T(index, "index")); });
}

ares_status *ares_masked_fill(ares_tensor a, ares_tensor mask, double value, ares_tensor *out) {
  return guard_out(out, [&] { return at::masked_fill(T(a), T(mask, "mask"), at::Scalar(value)); });
}

ares_status *ares_where(ares_tensor cond, ares_tensor a, ares_tensor b, ares_tensor *out) {
  return guard_out(out, [&] { return at::where(T(cond, "condition"), T(a), T(b)); });
}

ares_status *ares_tril(ares_tensor a, int64_t diagonal, ares_tensor *out) {
  return guard_out(out, [&] { return at::tril(T(a), diagonal); });
}

ares_status *ares_triu(ares_tensor a, int64_t diagonal, ares_tensor *out) {
  return guard_out(out, [&] { return at::triu(T(a), diagonal); });
}

ares_status *ares_clamp(ares_tensor a, int32_t has_min, double min, int32_t has_max,
                        double max, ares_tensor *out) {
  return guard_out(out, [&] {
    if (!has_min && !has_max) throw invalid_arg("clamp needs a minimum or a maximum");
    c10::optional<at::Scalar> lo, hi;
    if (has_min) lo = at::Scalar(min);
    if (has_max) hi = at::Scalar(max);
    return at::clamp(T(a), lo, hi);
  });
}

ares_status *ares_to(ares_tensor a, int32_t dtype, int32_t device_kind, int32_t device_index,
                     ares_tensor *out) {
  return guard_out(out, [&] {
    return T(a).to(to_device(device_kind, device_index), to_scalar_type(dtype));
  });
}

ares_status *ares_copy_into(ares_tensor dst, int64_t dim, int64_t start, ares_tensor src) {
  return guard([&] {
    at::NoGradGuard no_grad;
    const auto &s = T(src, "source");
    if (dim < 0) dim += T(dst, "destination").dim();
    T(dst, "destination").narrow(dim, start, s.size(dim)).copy_(s);
  });
}

// ---- neural-network ops -----------------------------------------------------

ares_status *ares_linear(ares_tensor x, ares_tensor w, ares_tensor bias, ares_tensor *out) {
  return guard_out(out, [&] { return at::linear(T(x, "input"), T(w, "weight"), opt(bias)); });
}

ares_status *ares_lora_linear(ares_tensor x, ares_tensor xa, ares_tensor w, ares_tensor bias, ares_tensor a,
                              ares_tensor b, double scale, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &in = T(x, "input");
    auto y = at::linear(in, T(w, "weight"), opt(bias));
    // [.., in] -> [.., r] -> [.., out], added as y + scale * update.
    auto update = at::linear(at::linear(xa ? T(xa, "adapter input") : in, T(a, "lora_A")), T(b, "lora_B"));
    return at::add(y, update, scale);
  });
}

ares_status *ares_embedding(ares_tensor weight, ares_tensor ids, ares_tensor *out) {
  return guard_out(out, [&] { return at::embedding(T(weight, "weight"), T(ids, "ids")); });
}

ares_status *ares_layer_norm(ares_tensor x, ares_tensor weight, ares_tensor bias, double eps,
                             ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &in = T(x, "input");
    if (in.dim() == 0) throw invalid_arg("layer_norm needs at least one dimension");
    return at::layer_norm(in, {in.size(-1)}, opt(weight), opt(bias), eps);
  });
}

ares_status *ares_rms_norm(ares_tensor x, ares_tensor weight, double eps, ares_tensor *out) {
  return guard_out(out, [&] {
    const auto &in = T(x, "input");
    if (in.dim() == 0) throw invalid_arg("rms_norm needs at least one dimension");
    // Composed (libtorch 1.13 has no rms_norm), in f32 as Hugging Face's
    // Llama and Qwen implementations do, then cast back.
    auto xf = in.to(at::kFloat);
    auto r = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
    r = r.to(in.scalar_type());
    if (weight) r = r * weight->t;
    return r;
  });
}

ares_status *ares_cross_entropy(ares_tensor logits, ares_tensor targets, int64_t ignore_index,
                                int32_t reduction, double label_smoothing, ares_tensor *out) {
  return guard_out(out, [&] {
    int64_t red;
    switch (reduction) {
      case ARES_REDUCE_NONE: red = at::Reduction::None; break;
      case ARES_REDUCE_MEAN: red = at::Reduction::Mean; break;
      case ARES_REDUCE_SUM: red = at::Reduction::Sum; break;
      default: throw invalid_arg("unknown reduction " + std::to_string(reduction));
    }
    return at::cross_entropy_loss(T(logits, "logits"), T(targets, "targets"), {}, red, ignore_index,
                                  label_smoothing);
  });
}

ares_status *ares_attention(ares_tensor q, ares_tensor k, ares_tensor v, ares_tensor mask,
                            int32_t is_causal, double scale, ares_tensor *out) {
  return guard_out(out, [&] {
    at::Tensor m;
    if (mask) m = mask->t;
    return ares_internal_attention(T(q, "query"), T(k, "key"), T(v, "value"), m, is_causal != 0, scale);
  });
}

// ---- autograd ---------------------------------------------------------------

ares_status *ares_set_requires_grad(ares_tensor t, int32_t requires) {
  return guard([&] { T(t).set_requires_grad(requires != 0); });
}

ares_status *ares_requires_grad(ares_tensor t, int32_t *requires) {
  return guard([&] {
    check_out(requires);
    *requires = T(t).requires_grad() ? 1 : 0;
  });
}

ares_status *ares_backward(ares_tensor t, ares_tensor grad, int32_t retain_graph) {
  return guard([&] {
    at::Tensor g;
    if (grad) g = grad->t;
    T(t).backward(g, retain_graph != 0);
  });
}

ares_status *ares_grad(ares_tensor t, ares_tensor *out) {
  return guard([&] {
    check_out(out);
    const auto &g = T(t).grad();
    *out = g.defined() ? wrap(g) : nullptr;
  });
}

ares_status *ares_zero_grad(const ares_tensor *params, int64_t n) {
  return guard([&] {
    for (int64_t i = 0; i < n; i++) {
      auto &g = const_cast<at::Tensor &>(T(params[i], "parameter")).mutable_grad();
      g.reset();
    }
  });
}

// ---- optimisation -----------------------------------------------------------

ares_status *ares_adamw_step(const ares_tensor *params, const ares_tensor *master,
                             const ares_tensor *exp_avg, const ares_tensor *exp_avg_sq, int64_t n,
                             double lr, double beta1, double beta2, double eps, double weight_decay,
                             int64_t step) {
  return guard([&] {
    if (step < 1) throw invalid_arg("AdamW step must be >= 1, got " + std::to_string(step));
    at::NoGradGuard no_grad;
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    const double step_size = lr / bc1;
    const double bc2_sqrt = std::sqrt(bc2);
    for (int64_t i = 0; i < n; i++) {
      at::Tensor p = T(params[i], "parameter");
      at::Tensor g = p.grad();
      if (!g.defined()) continue;
      // w is what the update is applied to: the parameter, or its float32 master.
      at::Tensor w = p;
      const bool has_master = master != nullptr && master[i] != nullptr;
      if (has_master) {
        w = T(master[i], "master weight");
        if (!w.sizes().equals(p.sizes()) || w.scalar_type() != at::kFloat)
          throw invalid_arg("master weight of parameter " + std::to_string(i) +
                            " must be float32 with the parameter's shape");
        g = g.to(at::kFloat);
      }
      at::Tensor m = T(exp_avg[i], "exp_avg");
      at::Tensor v = T(exp_avg_sq[i], "exp_avg_sq");
      if (!m.sizes().equals(p.sizes()) || !v.sizes().equals(p.sizes()))
        throw invalid_arg("optimizer state of parameter " + std::to_string(i) +
                          " does not match its shape");
      if (weight_decay != 0) w.mul_(1.0 - lr * weight_decay);
      m.lerp_(g, 1.0 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1.0 - beta2);
      auto denom = (v.sqrt() / bc2_sqrt).add_(eps);
      w.addcdiv_(m, denom, -step_size);
      if (has_master) p.copy_(w);
    }
  });
}

ares_status *ares_clip_grad_norm(const ares_tensor *params, int64_t n, double max_norm,
                                 double *total_norm) {
  return guard([&] {
    check_out(total_norm);
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> norms;
    std::vector<at::Tensor> grads;
    for (int64_t i = 0; i < n; i++) {
      const at::Tensor &g = T(params[i], "parameter").grad();
      if (!g.defined()) continue;
      grads.push_back(g);
      norms.push_back(at::linalg_vector_norm(g.to(at::kFloat), 2));
    }
    if (grads.empty()) {
      *total_norm = 0;
      return;
    }
    double total = at::linalg_vector_norm(at::stack(norms), 2).item<double>();
    *total_norm = total;
    if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
      double coef = max_norm / (total + 1e-6);
      for (auto &g : grads) g.mul_(coef);
    }
  });
}

}  // extern "C"
