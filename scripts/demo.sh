#!/usr/bin/env bash
# The main job until `lmlab run` exists: train a tokenizer and the tiny model on a text file,
# then generate from it. Usage: scripts/demo.sh [TEXT_FILE] [RUN_NAME]
# Defaults to Shakespeare from ../shared/data; any plain-text file of a few hundred KB works.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:-../shared/data/text/tinyshakespeare.txt}
run=runs/${2:-demo}
if [ ! -f "$text" ]; then
  echo "error: text file $text not found; pass one: scripts/demo.sh path/to/text.txt" >&2
  exit 1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}
cargo build --release -q -p lmlab
lmlab="$CARGO_TARGET_DIR/release/lmlab"
mkdir -p "$run"
set -x
"$lmlab" tokenizer train --input "$text" --vocab-size 2048 --out "$run/tokenizer.json"
"$lmlab" tokenizer stats --tokenizer "$run/tokenizer.json" "$text"
"$lmlab" pretrain --config configs/tiny.toml --data "$text" --out "$run/base"
"$lmlab" generate --model "$run/base" --prompt "ROMEO:" --max-tokens 120 --temperature 0.8 --top-k 50 --seed 1
"$lmlab" generate --model "$run/base" --prompt "ROMEO:" --max-tokens 120 --temperature 0.8 --top-k 50 --seed 1 --no-cache
