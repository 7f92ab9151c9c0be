#!/usr/bin/env bash
# The main job until `lmlab run` exists: the whole road from a web crawl to a model that writes,
# and what it gets right, invents or declines to answer (`eval qa`),
# on the built-in world, with nothing downloaded. Generates the world's labelled crawl, learns a
# tokenizer from its pages, cleans the crawl into token shards (and scores the filters against
# the labels), pretrains the tiny model on the shards, and generates from it.
# Usage: scripts/world.sh [RUN_NAME] [SEED]     (about ten minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/${1:-world}
seed=${2:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}
# Cargo shows its progress: the first build takes several minutes.
cargo build --release -p lmlab
lmlab="$CARGO_TARGET_DIR/release/lmlab"
mkdir -p "$run"
set -x
"$lmlab" world generate --out "$run/world" --scale tiny --seed "$seed"
"$lmlab" tokenizer train --input "$run/world/crawl" --vocab-size 2048 --out "$run/tokenizer.json"
"$lmlab" data prepare --input "$run/world/crawl" --tokenizer "$run/tokenizer.json" --out "$run/data"
"$lmlab" data eval-filters --labels "$run/world/labels.jsonl" --data "$run/data"
"$lmlab" pretrain --config configs/tiny.toml --data "$run/data" --out "$run/base"
"$lmlab" generate --model "$run/base" --prompt "The history of" --max-tokens 120 --temperature 0.8 --top-k 50 --seed 1
"$lmlab" inspect next-token --model "$run/base" --prompt "The capital of"
"$lmlab" eval qa --model "$run/base" --questions "$run/world/eval/facts.jsonl" "$run/world/eval/nonexistent.jsonl" "$run/world/eval/paraphrase.jsonl" --out "$run/eval"
