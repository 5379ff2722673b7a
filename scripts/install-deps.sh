#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12, and only what is
# missing: libtorch (unless LIBTORCH names another one), Gloo's headers (for
# c10d on CPUs), tcmalloc (the host allocator), OpenBLAS (without it
# Debian's libtorch falls back to the slow reference BLAS), PyTorch for Python
# (the reference and peer scripts), Node.js and npm (the tokenizer and
# chat-template references), and in CI the CUDA compiler for the
# compile check of the CUDA sources.
set -euo pipefail

pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [ -z "${LIBTORCH:-}" ] && ! have_pkg libtorch-dev; then pkgs+=(libtorch-dev); fi
have_pkg libopenblas0-pthread || pkgs+=(libopenblas0-pthread)
# libtorch's c10d headers include Gloo's; without them the shim builds but the
# Gloo process group (distributed training on CPUs) is unavailable.
have_pkg libgloo-dev || pkgs+=(libgloo-dev)
have_pkg python3-torch || pkgs+=(python3-torch)
# gperftools' tcmalloc, the host allocator linked into the engine's binaries
# (engine/torch/malloc_tcmalloc.go).
have_pkg libtcmalloc-minimal4 || pkgs+=(libtcmalloc-minimal4)
# Node.js and npm run Hugging Face's own JavaScript tokenizers and Jinja, the
# references of the tokenizer and chat-template tests (make refs).
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
need_nvcc=0
if [ "${CI:-}" = "true" ] && ! command -v nvcc >/dev/null 2>&1; then need_nvcc=1; fi

if [ ${#pkgs[@]} -eq 0 ] && [ $need_nvcc -eq 0 ]; then exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [ $need_nvcc -eq 1 ]; then
  # nvcc lives in Debian's non-free component.
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q "non-free" "$src"; then
    $SUDO sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "$src"
  elif [ -f /etc/apt/sources.list ] && ! grep -q "non-free" /etc/apt/sources.list; then
    $SUDO sed -i -E 's/^(deb .* main)$/\1 contrib non-free non-free-firmware/' /etc/apt/sources.list
  fi
  pkgs+=(nvidia-cuda-toolkit)
fi

echo "installing: ${pkgs[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
