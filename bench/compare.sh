#!/usr/bin/env bash
# Runs `lmlab bench train` and the PyTorch reference (bench/pytorch_gpt.py) on the same preset,
# batch, sequence length, vocabulary and thread count, and prints both and the ratio.
# Usage: bench/compare.sh [CONFIG] [BATCH] [SEQ] [THREADS]
# Needs Debian's CPU PyTorch with OpenBLAS: apt-get install python3-torch libopenblas0-pthread
# (without OpenBLAS, Debian's torch falls back to the reference BLAS and is ~10x slower).
# OpenBLAS may not recognise a virtualised CPU ("Intel Xeon Processor") and then picks a slow
# generic kernel; unless OPENBLAS_CORETYPE is already set, we name the kernel the CPU supports
# (SkylakeX for AVX-512, Haswell for AVX2), so PyTorch is measured at its best.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/small.toml}
batch=${2:-8}
seq=${3:-256}
threads=${4:-2}
vocab=4096
steps=10
python=${PYTHON:-/usr/bin/python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}
cargo build --release -q -p lmlab
lmlab="$CARGO_TARGET_DIR/release/lmlab"

if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
export OPENBLAS_NUM_THREADS=$threads
echo "PyTorch BLAS: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}, $threads threads" >&2

ours=$("$lmlab" --threads "$threads" bench train --config "$config" --batch-size "$batch" --seq-len "$seq" --vocab-size "$vocab" --steps "$steps" --json)
theirs=$(OMP_NUM_THREADS=$threads "$python" bench/pytorch_gpt.py --config "$config" --batch-size "$batch" --seq-len "$seq" --vocab-size "$vocab" --steps "$steps" --threads "$threads")

OURS="$ours" THEIRS="$theirs" "$python" - <<'PY'
import json, os
o, t = json.loads(os.environ["OURS"]), json.loads(os.environ["THEIRS"])
assert o["params"] == t["params"], f"parameter counts differ: lmlab {o['params']} vs pytorch {t['params']}"
print(f"{'':10} {'tokens/s':>10} {'ms/step':>9} {'forward':>9} {'backward':>9} {'optim':>8}")
for name, r in [("lmlab", o), ("pytorch", t)]:
    print(f"{name:10} {r['tokens_per_sec']:>10.0f} {r['ms_per_step']:>9.1f} {r['forward_ms']:>9.1f} {r['backward_ms']:>9.1f} {r['optimizer_ms']:>8.1f}")
print(f"params {o['params']:,}, B={o['batch_size']} T={o['seq_len']}, {o['threads']} threads; {t['framework']}")
print(f"lmlab / pytorch throughput: {o['tokens_per_sec'] / t['tokens_per_sec']:.2f}x; "
      f"forward {t['forward_ms'] / o['forward_ms']:.2f}x, backward {t['backward_ms'] / o['backward_ms']:.2f}x as fast")
print(f"lmlab MFU {o['mfu'] * 100:.1f}% of a measured {o['peak_matmul_gflops']:.1f} GFLOP/s f32 matmul peak")
PY
