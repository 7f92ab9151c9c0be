#!/usr/bin/env bash
# Training speed against PyTorch, in one run: `lmlab bench train` (f32, and bf16 mixed precision)
# and bench/pytorch_gpt.py on the same model, batch, sequence length, vocabulary and thread count,
# PyTorch in three modes
# (eager f32 with attention written out; f32 with scaled_dot_product_attention; SDPA under bf16
# autocast). Each measurement runs REPEATS times (default 3) and the table shows medians.
#
# Usage: bench/compare.sh [THREADS]        every model of the comparison (about 6 minutes)
#        bench/compare.sh THREADS CONFIG BATCH SEQ   one model
#
# PyTorch: PyPI's torch 2.x in a venv outside the clone (bench/torch_venv.sh makes it: about
# 5 GB, its CUDA build runs on the CPU), or PYTHON=... for another interpreter. Without either,
# Debian's python3-torch 1.13 (eager mode only; apt-get install python3-torch
# libopenblas0-pthread) is the fallback. LMLAB=path/to/lmlab measures another build (say, an
# older commit's) against the same PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeats=${REPEATS:-3}
vocab=4096
steps=10
if [ $# -ge 4 ]; then
  models=("$2 $3 $4")
else
  models=("configs/small.toml 8 256" "bench/configs/small-gpt2.toml 8 256" "configs/tiny.toml 16 128")
fi

if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif python=$(bench/torch_venv.sh 2>/dev/null); then :
else
  echo "compare.sh: no PyTorch 2 venv (bench/torch_venv.sh failed); falling back to Debian's python3-torch" >&2
  python=/usr/bin/python3
  # Debian's torch uses OpenBLAS, which does not recognise a virtualised CPU and would pick a
  # slow generic kernel: name the one this CPU supports.
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
  export OPENBLAS_NUM_THREADS=$threads
fi
modes=$("$python" -c 'import torch; print("eager sdpa bf16" if int(torch.__version__.split(".")[0]) >= 2 else "eager")')

if [ -z "${LMLAB:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}
  cargo build --release -q -p lmlab
  LMLAB="$CARGO_TARGET_DIR/release/lmlab"
fi

# Every measurement, one JSON line each, kept after the run (the table below is made from it).
results=${RESULTS:-$(mktemp /tmp/lmlab-compare-XXXXXX.jsonl)}
echo "compare.sh: raw results in $results" >&2
for model in "${models[@]}"; do
  read -r config batch seq <<<"$model"
  common=(--config "$config" --batch-size "$batch" --seq-len "$seq" --vocab-size "$vocab" --steps "$steps")
  for r in $(seq "$repeats"); do
    echo "[$config, run $r/$repeats] lmlab f32 and bf16, pytorch $modes" >&2
    for precision in f32 bf16; do
      who=lmlab; [ "$precision" = f32 ] || who=lmlab-$precision
      out=$("$LMLAB" --threads "$threads" bench train "${common[@]}" --precision "$precision" --json | tr -d '\n')
      echo "{\"who\": \"$who\", \"config\": \"$config\", \"run\": $out}" >>"$results"
    done
    for mode in $modes; do
      out=$(OMP_NUM_THREADS=$threads "$python" bench/pytorch_gpt.py "${common[@]}" --threads "$threads" --mode "$mode")
      echo "{\"who\": \"pytorch-$mode\", \"config\": \"$config\", \"run\": $out}" >>"$results"
    done
  done
done

RESULTS="$results" "$python" - <<'PY'
import json, os, statistics
rows = [json.loads(l) for l in open(os.environ["RESULTS"])]
configs = list(dict.fromkeys(r["config"] for r in rows))
def med(config, who, key="tokens_per_sec"):
    vals = [r["run"][key] for r in rows if r["who"] == who and r["config"] == config and r["run"].get(key) is not None]
    return statistics.median(vals) if vals else None
framework = next(r["run"]["framework"] for r in rows if r["who"].startswith("pytorch"))
whos = list(dict.fromkeys(r["who"] for r in rows))
print(f"tokens/s, medians of {max(1, sum(1 for r in rows if r['who'] == 'lmlab') // len(configs))} runs; {framework}")
print(f"{'model':34} " + " ".join(f"{w:>14}" for w in whos) + "   ratios")
for c in configs:
    lm = [r["run"] for r in rows if r["who"] == "lmlab" and r["config"] == c][0]
    for r in rows:
        if r["who"] != "lmlab" and r["config"] == c:
            assert r["run"]["params"] == lm["params"], f"{c}: parameter counts differ: lmlab {lm['params']} vs pytorch {r['run']['params']}"
    meds = {w: med(c, w) for w in whos}
    # lmlab f32 against each f32 mode; lmlab bf16 against PyTorch's bf16 autocast.
    pairs = [("lmlab", w) for w in whos if w in ("pytorch-eager", "pytorch-sdpa")] + [("lmlab-bf16", "pytorch-bf16")]
    ratios = "  ".join(f"{a}/{b.removeprefix('pytorch-')} {meds[a] / meds[b]:.2f}x" for a, b in pairs if a in meds and b in meds)
    print(f"{c:34} " + " ".join(f"{meds[w]:>14,.0f}" for w in whos) + f"   {ratios}")
    print(f"{'':34} {lm['params']:,} params, B={lm['batch_size']} T={lm['seq_len']}, {lm['threads']} threads; lmlab MFU "
          f"{med(c, 'lmlab', 'mfu') * 100:.1f}% of a measured {med(c, 'lmlab', 'peak_matmul_gflops'):.0f} GFLOP/s f32 matmul peak"
          + (f", bf16 {med(c, 'lmlab-bf16', 'mfu') * 100:.1f}% of {med(c, 'lmlab-bf16', 'peak_matmul_gflops'):.0f} GFLOP/s bf16" if 'lmlab-bf16' in meds else ""))
    mib = lambda who, key: (f"{med(c, who, key) / 2**20:.0f}" if med(c, who, key) is not None else "-")
    print(f"{'':34} MiB kept for backward: " + ", ".join(f"{w} {mib(w, 'activation_bytes')}" for w in whos)
          + "; peak RSS growth over the first step: " + ", ".join(f"{w} {mib(w, 'first_step_peak_rss_growth_bytes')}" for w in whos))
PY
