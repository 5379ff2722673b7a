// ares_dist.cpp: the data-parallel layer behind kernels/include/ares_dist.h,
// over c10d: TCPStore for rendezvous, ProcessGroupGloo on CPU and
// ProcessGroupNCCL on CUDA (when the shim is built with CUDA and nccl.h).
//
// Compiles against libtorch 1.13 (Debian; process groups derive from
// c10d::ProcessGroup) and 2.x (they derive from c10d::Backend). The c10d
// headers guard each backend with USE_C10D_GLOO / USE_C10D_NCCL, which the
// libtorch build defines for its own sources; this TU defines them when the
// backend's headers are installed.
#include "ares_dist.h"

#include <torch/version.h>

#if defined(__has_include)
#if __has_include(<gloo/algorithm.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#define ARES_HAVE_GLOO 1
#endif
#if defined(ARES_WITH_CUDA) && __has_include(<nccl.h>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#define ARES_HAVE_NCCL 1
#endif
#endif

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#ifdef ARES_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef ARES_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "shim_internal.h"

namespace {

#if TORCH_VERSION_MAJOR >= 2
using PGBase = c10d::Backend;
#else
using PGBase = c10d::ProcessGroup;
#endif

using namespace ares_shim;
using dist_invalid = ares_invalid_arg;  // reported as ARES_ERR_INVALID

// guard(). With collective set, libtorch and Gloo failures (peer gone,
// timeout, size mismatch between ranks) are reported as ARES_ERR_DIST;
// invalid arguments and OOM keep their codes.
template <typename F>
ares_status *dguard(bool collective, F &&body) {
  ares_status *st = guard(std::forward<F>(body));
  int32_t code = ares_status_code(st);
  if (!collective || (code != ARES_ERR_TORCH && code != ARES_ERR_INTERNAL)) return st;
  std::string msg = ares_status_message(st);
  ares_status_free(st);
  return ares_internal_status(ARES_ERR_DIST, msg);
}

std::chrono::milliseconds ms(int64_t v) { return std::chrono::milliseconds(v); }

std::string str_or(const char *s, const char *dflt) {
  return (s == nullptr || *s == '\0') ? std::string(dflt) : std::string(s);
}

}  // namespace

struct ares_store_s {
  c10::intrusive_ptr<c10d::Store> store;
  int32_t port = 0;
};

struct ares_pg_s {
  c10::intrusive_ptr<PGBase> pg;
  int32_t rank = 0;
  int32_t world = 1;
  std::chrono::milliseconds timeout{0};
};

struct ares_work_s {
  c10::intrusive_ptr<c10d::Work> work;
  std::chrono::milliseconds timeout{0};
  // Bucket: flat is what the collective ran on; outs receive their slices.
  at::Tensor flat;
  std::vector<at::Tensor> outs;
  bool copy_back = false;
  double divide = 0;  // > 0: divide the result by this (AVG)
  // Allgather.
  std::vector<std::vector<at::Tensor>> gathered;
  at::Tensor result;
  bool finished = false;
};

namespace {

void check_pg(ares_pg pg) {
  if (pg == nullptr || !pg->pg) throw dist_invalid("null process group");
}

c10d::ReduceOp to_reduce_op(int32_t op) {
  switch (op) {
    case ARES_DIST_SUM:
    case ARES_DIST_AVG:
      // Gloo has no AVG: sum, then divide when the work is finished.
      return c10d::ReduceOp::SUM;
    case ARES_DIST_MAX:
      return c10d::ReduceOp::MAX;
    case ARES_DIST_MIN:
      return c10d::ReduceOp::MIN;
  }
  throw dist_invalid("unknown reduce op " + std::to_string(op));
}

// The tensors of a collective: one contiguous tensor runs in place, several
// (or a non-contiguous one) are flattened into one buffer.
void prepare_bucket(const ares_tensor *ts, int64_t n, ares_work_s *w,
                    std::vector<at::Tensor> *io) {
  if (n <= 0 || ts == nullptr) throw dist_invalid("a collective needs at least one tensor");
  std::vector<at::Tensor> xs;
  xs.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    const at::Tensor &x = ares_internal_get(ts[i]);
    if (!x.defined()) throw dist_invalid("undefined tensor " + std::to_string(i));
    if (i > 0 && (x.scalar_type() != xs[0].scalar_type() || x.device() != xs[0].device()))
      throw dist_invalid("tensors of one collective must share dtype and device: tensor " +
                         std::to_string(i) + " is " + c10::toString(x.scalar_type()) + " on " +
                         x.device().str() + ", tensor 0 is " +
                         c10::toString(xs[0].scalar_type()) + " on " + xs[0].device().str());
    xs.push_back(x.detach());
  }
  if (xs.size() == 1 && xs[0].is_contiguous()) {
    w->flat = xs[0];
    w->copy_back = false;
  } else {
    std::vector<at::Tensor> flats;
    flats.reserve(xs.size());
    for (auto &x : xs) flats.push_back(x.reshape({-1}));
    w->flat = at::cat(flats);
    w->outs = std::move(xs);
    w->copy_back = true;
  }
  io->push_back(w->flat);
}

// Runs a collective on pg: start launches it on the work it is given (which
// has pg's timeout), and the work is handed out in *work.
template <typename F>
ares_status *collective(ares_pg pg, ares_work *work, F &&start) {
  return dguard(true, [&] {
    check_pg(pg);
    check_out(work);
    *work = nullptr;
    auto w = std::make_unique<ares_work_s>();
    w->timeout = pg->timeout;
    w->work = start(w.get());
    *work = w.release();
  });
}

void finish(ares_work_s *w) {
  if (w->finished) return;
  at::NoGradGuard no_grad;
  if (w->divide > 0) w->flat.div_(w->divide);
  if (w->copy_back) {
    int64_t off = 0;
    for (auto &o : w->outs) {
      int64_t k = o.numel();
      o.copy_(w->flat.narrow(0, off, k).view(o.sizes()));
      off += k;
    }
  }
  if (!w->gathered.empty()) {
    w->result = at::stack(w->gathered[0], 0);
    w->gathered.clear();
  }
  w->finished = true;
}

}  // namespace

extern "C" {

int32_t ares_dist_has_backend(int32_t backend) {
  switch (backend) {
    case ARES_DIST_GLOO:
#ifdef ARES_HAVE_GLOO
      return 1;
#else
      return 0;
#endif
    case ARES_DIST_NCCL:
#ifdef ARES_HAVE_NCCL
      return 1;
#else
      return 0;
#endif
  }
  return 0;
}

// ---- store --------------------------------------------------------------------

ares_status *ares_store_tcp_new(const char *host, int32_t port, int32_t is_master,
                                int32_t world_size, int32_t wait_workers, int64_t timeout_ms,
                                ares_store *out) {
  return dguard(true, [&] {
    check_out(out);
    *out = nullptr;
    if (host == nullptr || *host == '\0') throw dist_invalid("empty store host");
    if (port < 0 || port > 65535) throw dist_invalid("store port " + std::to_string(port) + " out of range");
    if (port == 0 && !is_master) throw dist_invalid("a store client needs the master's port");
    if (world_size < 1) throw dist_invalid("world size " + std::to_string(world_size) + " < 1");
    if (timeout_ms <= 0) throw dist_invalid("store timeout must be positive");
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = is_master != 0;
    o.numWorkers = static_cast<std::size_t>(world_size);
    o.waitWorkers = wait_workers != 0;
    o.timeout = ms(timeout_ms);
    auto st = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
    auto *s = new ares_store_s{};
    s->port = static_cast<int32_t>(st->getPort());
    s->store = st;
    *out = s;
  });
}

ares_status *ares_store_port(ares_store s, int32_t *port) {
  return dguard(false, [&] {
    if (s == nullptr) throw dist_invalid("null store");
    check_out(port);
    *port = s->port;
  });
}

ares_status *ares_store_set(ares_store s, const char *key, const void *data, int64_t n) {
  return dguard(true, [&] {
    if (s == nullptr) throw dist_invalid("null store");
    if (key == nullptr) throw dist_invalid("null key");
    if (n < 0 || (n > 0 && data == nullptr)) throw dist_invalid("bad value buffer");
    const auto *p = static_cast<const uint8_t *>(data);
    std::vector<uint8_t> v(p, p + n);
    s->store->set(key, v);
  });
}

ares_status *ares_store_get(ares_store s, const char *key, void *buf, int64_t cap, int64_t *n) {
  return dguard(true, [&] {
    if (s == nullptr) throw dist_invalid("null store");
    if (key == nullptr) throw dist_invalid("null key");
    check_out(n);
    if (cap < 0 || (cap > 0 && buf == nullptr)) throw dist_invalid("bad value buffer");
    std::vector<uint8_t> v = s->store->get(key);
    *n = static_cast<int64_t>(v.size());
    if (!v.empty() && cap > 0)
      std::memcpy(buf, v.data(), std::min<size_t>(v.size(), static_cast<size_t>(cap)));
  });
}

ares_status *ares_store_add(ares_store s, const char *key, int64_t delta, int64_t *out) {
  return dguard(true, [&] {
    if (s == nullptr) throw dist_invalid("null store");
    if (key == nullptr) throw dist_invalid("null key");
    check_out(out);
    *out = s->store->add(key, delta);
  });
}

void ares_store_free(ares_store s) {
  try {
    delete s;
  } catch (...) {
  }
}

// ---- process group --------------------------------------------------------------

ares_status *ares_pg_new(ares_store store, const char *prefix, int32_t backend, int32_t rank,
                         int32_t world_size, int64_t timeout_ms, const char *iface,
                         const char *host, int32_t threads, ares_pg *out) {
  return dguard(true, [&] {
    check_out(out);
    *out = nullptr;
    if (store == nullptr || !store->store) throw dist_invalid("null store");
    if (world_size < 1) throw dist_invalid("world size " + std::to_string(world_size) + " < 1");
    if (rank < 0 || rank >= world_size)
      throw dist_invalid("rank " + std::to_string(rank) + " outside [0, " +
                         std::to_string(world_size) + ")");
    if (timeout_ms <= 0) throw dist_invalid("process group timeout must be positive");
    c10::intrusive_ptr<c10d::Store> st = store->store;
    std::string pre = str_or(prefix, "");
    if (!pre.empty()) st = c10::make_intrusive<c10d::PrefixStore>(pre, st);
    auto *p = new ares_pg_s{};
    try {
      p->rank = rank;
      p->world = world_size;
      p->timeout = ms(timeout_ms);
      switch (backend) {
        case ARES_DIST_GLOO: {
#ifdef ARES_HAVE_GLOO
          auto o = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
          std::string ifn = str_or(iface, "");
          std::string hn = str_or(host, "");
          if (!ifn.empty())
            o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifn));
          else if (!hn.empty())
            o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hn));
          else
            o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
          if (threads > 0) o->threads = threads;
          p->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(st, rank, world_size, o);
#else
          throw dist_invalid(
              "the shim was built without Gloo (its headers were not found at build time)");
#endif
          break;
        }
        case ARES_DIST_NCCL: {
#ifdef ARES_HAVE_NCCL
          auto o = c10d::ProcessGroupNCCL::Options::create();
          o->timeout = ms(timeout_ms);
          p->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(st, rank, world_size, o);
#else
          throw dist_invalid("the shim was built without NCCL (needs a CUDA libtorch and nccl.h)");
#endif
          break;
        }
        default:
          throw dist_invalid("unknown backend " + std::to_string(backend));
      }
    } catch (...) {
      delete p;
      throw;
    }
    *out = p;
  });
}

void ares_pg_free(ares_pg pg) {
  try {
    delete pg;  // the group's destructor drains its queue (bounded by the timeout)
  } catch (...) {
  }
}

// ---- collectives ------------------------------------------------------------------

ares_status *ares_pg_allreduce(ares_pg pg, const ares_tensor *ts, int64_t n, int32_t op,
                               ares_work *work) {
  return collective(pg, work, [&](ares_work_s *w) {
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_reduce_op(op);
    opts.timeout = pg->timeout;
    std::vector<at::Tensor> io;
    prepare_bucket(ts, n, w, &io);
    if (op == ARES_DIST_AVG) {
      if (!at::isFloatingType(w->flat.scalar_type()))
        throw dist_invalid("AVG needs a floating-point tensor");
      w->divide = static_cast<double>(pg->world);
    }
    return pg->pg->allreduce(io, opts);
  });
}

ares_status *ares_pg_broadcast(ares_pg pg, const ares_tensor *ts, int64_t n, int32_t root,
                               ares_work *work) {
  return collective(pg, work, [&](ares_work_s *w) {
    if (root < 0 || root >= pg->world)
      throw dist_invalid("broadcast root " + std::to_string(root) + " outside [0, " +
                         std::to_string(pg->world) + ")");
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = pg->timeout;
    std::vector<at::Tensor> io;
    prepare_bucket(ts, n, w, &io);
    return pg->pg->broadcast(io, opts);
  });
}

ares_status *ares_pg_allgather(ares_pg pg, ares_tensor t, ares_work *work) {
  return collective(pg, work, [&](ares_work_s *w) {
    at::Tensor x = ares_internal_get(t).detach().contiguous();
    std::vector<at::Tensor> in{x};
    w->gathered.resize(1);
    for (int32_t r = 0; r < pg->world; r++) w->gathered[0].push_back(at::empty_like(x));
    c10d::AllgatherOptions opts;
    opts.timeout = pg->timeout;
    w->flat = x;  // keeps the input alive until the work is finished
    return pg->pg->allgather(w->gathered, in, opts);
  });
}

ares_status *ares_pg_barrier(ares_pg pg, ares_work *work) {
  return collective(pg, work, [&](ares_work_s *) {
    c10d::BarrierOptions opts;
    opts.timeout = pg->timeout;
    return pg->pg->barrier(opts);
  });
}

ares_status *ares_work_wait(ares_work w, int64_t timeout_ms) {
  return dguard(true, [&] {
    if (w == nullptr || !w->work) throw dist_invalid("null work");
    if (w->finished) return;
    auto to = timeout_ms > 0 ? ms(timeout_ms) : w->timeout;
    w->work->wait(to);
    finish(w);
  });
}

ares_status *ares_work_poll(ares_work w, int32_t *done) {
  return dguard(true, [&] {
    if (w == nullptr || !w->work) throw dist_invalid("null work");
    check_out(done);
    *done = w->work->isCompleted() ? 1 : 0;
  });
}

ares_status *ares_work_result(ares_work w, ares_tensor *out) {
  return dguard(false, [&] {
    if (w == nullptr) throw dist_invalid("null work");
    check_out(out);
    *out = nullptr;
    if (!w->finished) throw dist_invalid("work not waited on yet");
    if (w->result.defined()) *out = ares_internal_wrap(w->result);
  });
}

void ares_work_free(ares_work w) {
  try {
    delete w;
  } catch (...) {
  }
}

}  // extern "C"
