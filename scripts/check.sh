#!/usr/bin/env bash
# The test command (what CI runs, after .ci/run has installed the prerequisites): formatting,
# lints, the whole test suite, then the suite again with SIMD forced off (LMLAB_SIMD=off), so
# every kernel's portable fallback carries the same assertions as its SIMD version.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}"

step() { printf '\n==> %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings are errors)"
cargo clippy --release --workspace --all-targets -- -D warnings
step "tests"
cargo test --release --workspace
step "kernels on this CPU (an instruction set it lacks is named NOT RUN)"
cargo test --release -p lmlab-kernels --test kernels -- --nocapture --test-threads 1 2>&1 | grep -E "NOT RUN|^test result" | sort -u
if command -v qemu-x86_64 >/dev/null; then
  step "kernel tests on an emulated CPU without AVX (qemu-x86_64 -cpu Westmere)"
  kernels=$(cargo test --release -p lmlab-kernels --test kernels --no-run --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*kernels-[^"]*"' | cut -d'"' -f4)
  qemu-x86_64 -cpu Westmere "$kernels" --test-threads 1
fi
step "tests with SIMD forced off (LMLAB_SIMD=off)"
LMLAB_SIMD=off cargo test --release --workspace
