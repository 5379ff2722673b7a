// The floor of bench/torchops: the same small ops as the Go engine and the
// PyTorch peer, called on ATen directly from a C++ loop, each result freed
// at once. What the engine adds on top of this (the cgo crossing, the
// handle, the status, the Scope) is its per-op overhead. Built by
// `make build/bin/torchops-floor`; run by `go run ./bench/torchops`.
// Prints one JSON object: {"ops": {name: ns per op}}.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

double per_op(int64_t iters, const std::function<at::Tensor()> &f) {
  for (int64_t i = 0; i < std::min<int64_t>(1000, iters); i++) f();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; i++) f();
  auto dt = std::chrono::steady_clock::now() - t0;
  return std::chrono::duration<double, std::nano>(dt).count() / static_cast<double>(iters);
}

}  // namespace

int main(int argc, char **argv) {
  int64_t iters = argc > 1 ? std::atoll(argv[1]) : 100000;
  at::set_num_threads(1);
  at::Tensor a = at::ones({8}), b = at::ones({8}), m = at::ones({8, 8});
  std::vector<std::pair<std::string, std::function<at::Tensor()>>> ops = {
      {"add [8]", [&] { return at::add(a, b); }},
      {"mul_scalar [8]", [&] { return at::mul(a, 2.0); }},
      {"matmul [8x8]", [&] { return at::matmul(m, m); }},
      {"sum [8]", [&] { return at::sum(a); }},
      {"softmax [8x8]", [&] { return at::softmax(m, -1); }},
      {"linear [8x8]", [&] { return at::linear(m, m); }},
  };
  std::printf("{\"ops\": {");
  for (size_t i = 0; i < ops.size(); i++) {
    std::printf("%s\"%s\": %.1f", i ? ", " : "", ops[i].first.c_str(), per_op(iters, ops[i].second));
  }
  std::printf("}}\n");
  return 0;
}
