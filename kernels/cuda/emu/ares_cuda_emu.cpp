// ares_cuda_emu.cpp: the launch machinery of the CUDA host emulation
// (ares_cuda_emu.h). Each CUDA thread of a block is a fiber: a stack of its
// own and a saved stack pointer. A scheduler on the launching thread runs
// every runnable fiber until it finishes or waits at a barrier, then opens the
// barriers all of whose participants have arrived. Switching is a few
// instructions on x86-64 (hand-written below: the saved callee-saved registers
// and the stack pointer), ucontext elsewhere; switches are announced to the
// address sanitizer, which otherwise loses track of the stacks.
#include "ares_cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ARES_EMU_ASAN 1
#else
#define ARES_EMU_ASAN 0
#endif

cudaError_t ares_emu::last_error = cudaSuccess;

namespace {

#if defined(__x86_64__)
// ares_emu_switch(&save, next): pushes the callee-saved registers and the
// SSE/x87 control words, stores the stack pointer in *save, loads next and
// pops the same from there. A new fiber's stack is laid out by start_frame so
// that the first switch "returns" into ares_emu_trampoline, which calls
// entry(fiber) from r13 and r12.
extern "C" void ares_emu_switch(void **save, void *next);
extern "C" void ares_emu_trampoline();
asm(R"(
  .text
  .globl ares_emu_switch
  .type ares_emu_switch, @function
ares_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ares_emu_switch, .-ares_emu_switch

  .globl ares_emu_trampoline
  .type ares_emu_trampoline, @function
ares_emu_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size ares_emu_trampoline, .-ares_emu_trampoline
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

enum class State { runnable, at_sync, at_warp, done };

struct Fiber {
  void *stack = nullptr;  // the usable part, above a guard page
  size_t stack_size = 0;
#if defined(__x86_64__)
  void *sp = nullptr;
#else
  ucontext_t ctx;
#endif
  void *fake_stack = nullptr;  // the sanitizer's, while suspended
  State state = State::runnable;
  unsigned tid = 0;  // linear thread index in the block
  uint3 idx{};       // its threadIdx
};

constexpr size_t kStackSize = 256 << 10;
constexpr size_t kGuard = 4096;

struct Scheduler {
  std::vector<Fiber> fibers;
  const std::function<void()> *body = nullptr;
  Fiber *running = nullptr;
#if defined(__x86_64__)
  void *main_sp = nullptr;
#else
  ucontext_t main_ctx;
#endif
  const void *main_stack = nullptr;  // the launching thread's stack, for the sanitizer
  size_t main_stack_size = 0;
  float warp_slots[1024];  // one value per thread for the shuffles
};

Scheduler *sched = nullptr;

[[noreturn]] void die(const char *msg) {
  fprintf(stderr, "CUDA emulation: %s (block %u,%u,%u)\n", msg, blockIdx.x, blockIdx.y,
          blockIdx.z);
  abort();
}

void *alloc_stack(size_t size) {
  void *p = mmap(nullptr, size + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) die("cannot map a fiber stack");
  mprotect(p, kGuard, PROT_NONE);  // an overflow faults instead of corrupting
  return static_cast<char *>(p) + kGuard;
}

void set_coordinates(const Fiber &f) { threadIdx = f.idx; }

// From the running fiber back to the scheduler. finished: the fiber never
// resumes, so the sanitizer may drop its fake stack.
void to_scheduler(bool finished) {
  Fiber *f = sched->running;
#if ARES_EMU_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f->fake_stack, sched->main_stack,
                                 sched->main_stack_size);
#endif
#if defined(__x86_64__)
  void *dead;
  ares_emu_switch(finished ? &dead : &f->sp, sched->main_sp);
#else
  swapcontext(&f->ctx, &sched->main_ctx);
#endif
  (void)finished;
#if ARES_EMU_ASAN
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
  set_coordinates(*f);
}

void fiber_main(Fiber *f) {
#if ARES_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &sched->main_stack, &sched->main_stack_size);
#endif
  set_coordinates(*f);
  (*sched->body)();
  f->state = State::done;
  to_scheduler(true);
  die("a finished fiber was resumed");
}

#if !defined(__x86_64__)
void fiber_entry(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<Fiber *>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

// Prepares f to start the kernel body at its next switch.
void start_frame(Fiber &f) {
#if defined(__x86_64__)
  // From the top: the trampoline's return slot, then six registers (rbp, rbx,
  // r12 = fiber, r13 = entry, r14, r15) and the control words, as
  // ares_emu_switch pops them. After its ret, rsp is 16-byte aligned for the
  // trampoline's call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + f.stack_size) & ~uintptr_t(15);
  uint64_t *sp = reinterpret_cast<uint64_t *>(top) - 2;  // 16 bytes of headroom
  *--sp = reinterpret_cast<uint64_t>(&ares_emu_trampoline);
  *--sp = 0;                                           // rbp
  *--sp = 0;                                           // rbx
  *--sp = reinterpret_cast<uint64_t>(&f);              // r12
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);     // r13
  *--sp = 0;                                           // r14
  *--sp = 0;                                           // r15
  *--sp = uint64_t(0x037F) << 32 | 0x1F80;             // x87 control word, MXCSR
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = f.stack_size;
  f.ctx.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(&f);
  makecontext(&f.ctx, reinterpret_cast<void (*)()>(fiber_entry), 2, unsigned(p >> 32),
              unsigned(p & 0xffffffffu));
#endif
  f.state = State::runnable;
  f.fake_stack = nullptr;
}

void resume(Fiber &f) {
  sched->running = &f;
  set_coordinates(f);
#if ARES_EMU_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, f.stack_size);
#endif
#if defined(__x86_64__)
  ares_emu_switch(&sched->main_sp, f.sp);
#else
  swapcontext(&sched->main_ctx, &f.ctx);
#endif
#if ARES_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  sched->running = nullptr;
}

// The order in which a block's threads advance. Real warps run at their own
// pace, so a kernel must be right under every order; two orders that differ
// the most expose a missing barrier: lockstep (every thread up to its next
// barrier, warps in order) and ahead (each warp, from the last, runs as far as
// its own shuffles let it before the next warp starts). ARES_CUDA_EMU_SCHEDULE
// picks one: "lockstep" (the default) or "ahead".
enum class Schedule { lockstep, ahead };

Schedule schedule_from_env() {
  const char *v = getenv("ARES_CUDA_EMU_SCHEDULE");
  if (v == nullptr || strcmp(v, "lockstep") == 0) return Schedule::lockstep;
  if (strcmp(v, "ahead") == 0) return Schedule::ahead;
  fprintf(stderr, "CUDA emulation: ARES_CUDA_EMU_SCHEDULE=%s: want lockstep or ahead\n", v);
  exit(2);
}

// Opens warp w's shuffle barrier when every live lane waits there.
bool open_warp(unsigned w) {
  auto &fs = sched->fibers;
  const size_t end = std::min(fs.size(), size_t(w) * 32 + 32);
  unsigned live = 0, at = 0;
  for (size_t t = w * 32; t < end; t++) {
    live += fs[t].state != State::done;
    at += fs[t].state == State::at_warp;
  }
  if (at == 0 || at != live) return false;
  for (size_t t = w * 32; t < end; t++)
    if (fs[t].state == State::at_warp) fs[t].state = State::runnable;
  return true;
}

// Runs the runnable threads of warp w once each; true if any ran.
bool run_warp(unsigned w) {
  auto &fs = sched->fibers;
  const size_t end = std::min(fs.size(), size_t(w) * 32 + 32);
  bool ran = false;
  for (size_t t = w * 32; t < end; t++)
    if (fs[t].state == State::runnable) {
      resume(fs[t]);
      ran = true;
    }
  return ran;
}

// The kernels' shared memory (shared.ld; absent from a link without it).
extern "C" __attribute__((weak)) char __start_ares_cuda_shared[];
extern "C" __attribute__((weak)) char __stop_ares_cuda_shared[];

// Fills the shared memory with 0xff bytes, byte by byte: the section also
// holds the address sanitizer's red zones, which memset would report.
__attribute__((no_sanitize_address)) void poison_shared() {
  if (__start_ares_cuda_shared == nullptr) return;
  for (volatile char *p = __start_ares_cuda_shared; p < __stop_ares_cuda_shared; p++) *p = '\xff';
}

// Runs one block to completion.
void run_block(Schedule schedule) {
  poison_shared();
  auto &fs = sched->fibers;
  for (auto &f : fs) start_frame(f);
  const unsigned nwarps = static_cast<unsigned>((fs.size() + 31) / 32);
  for (;;) {
    bool progress = false;
    if (schedule == Schedule::lockstep) {
      for (unsigned w = 0; w < nwarps; w++) progress |= run_warp(w);
      for (unsigned w = 0; w < nwarps; w++) progress |= open_warp(w);
    } else {
      for (unsigned k = 0; k < nwarps; k++) {
        const unsigned w = nwarps - 1 - k;
        for (;;) {
          const bool ran = run_warp(w), opened = open_warp(w);
          if (!ran && !opened) break;
          progress = true;
        }
      }
    }
    // __syncthreads opens when every live thread waits there.
    unsigned live = 0, at_sync = 0;
    for (auto &f : fs) {
      live += f.state != State::done;
      at_sync += f.state == State::at_sync;
    }
    if (live == 0) return;
    if (at_sync == live) {
      for (auto &f : fs)
        if (f.state == State::at_sync) f.state = State::runnable;
      continue;
    }
    if (!progress)
      die("deadlock: threads wait at barriers the others can never reach (a __syncthreads or "
          "a warp shuffle in divergent code)");
  }
}

void wait_as(State s) {
  Fiber *f = sched->running;
  if (f == nullptr) die("a barrier outside a kernel");
  f->state = s;
  to_scheduler(false);
}

}  // namespace

namespace ares_emu {

void run_grid(dim3 grid, dim3 block, const std::function<void()> &body) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (sched != nullptr) die("a launch from inside a kernel");
  // One launch at a time: the coordinates and the scheduler are process-wide.
  static std::mutex launch_mu;
  std::lock_guard<std::mutex> lock(launch_mu);
  static const Schedule schedule = schedule_from_env();
  // Fiber stacks are mapped once and reused by every launch.
  static std::vector<Fiber> pool;
  while (pool.size() < threads) {
    Fiber f;
    f.stack_size = kStackSize;
    f.stack = alloc_stack(kStackSize);
    pool.push_back(f);
  }
  Scheduler s;
  s.fibers.assign(pool.begin(), pool.begin() + threads);
  for (unsigned t = 0; t < threads; t++) {
    s.fibers[t].tid = t;
    s.fibers[t].idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
  }
  s.body = &body;
  sched = &s;
  blockDim = block;
  gridDim = grid;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = uint3{x, y, z};
        run_block(schedule);
      }
  sched = nullptr;
}

void sync_block() { wait_as(State::at_sync); }

float shfl_xor(float v, int lane_mask) {
  Fiber *f = sched != nullptr ? sched->running : nullptr;
  if (f == nullptr) die("a warp shuffle outside a kernel");
  const unsigned t = f->tid, lane = t % 32, src_lane = lane ^ (lane_mask & 31);
  const unsigned src = t - lane + src_lane;
  sched->warp_slots[t] = v;
  wait_as(State::at_warp);
  // A source lane past the end of a partial warp gives the caller its own value.
  const float r = src < sched->fibers.size() ? sched->warp_slots[src] : v;
  wait_as(State::at_warp);  // no lane overwrites its slot before all have read
  return r;
}

}  // namespace ares_emu
