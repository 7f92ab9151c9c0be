#!/usr/bin/env bash
# From a crawl to an assistant on the built-in world, with the `knowledge` preset
# (configs/knowledge.toml): the world with a core of well-known facts, the base model, then
# instruction tuning three ways — full SFT, LoRA SFT, and full SFT whose abstentions follow the
# base model's own knowledge (R-Tuning) — each graded by `eval qa` before and after; then the
# reward model and DPO.
# Usage: scripts/assistant.sh [RUN_NAME] [SEED]   (about an hour on 2 CPU cores; the base model
# is most of it)
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/${1:-assistant}
seed=${2:-0}
preset=configs/knowledge.toml
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lmlab-target}
cargo build --release -p lmlab
lmlab="$CARGO_TARGET_DIR/release/lmlab"
mkdir -p "$run"
questions=("$run/world/eval/facts.jsonl" "$run/world/eval/nonexistent.jsonl" "$run/world/eval/paraphrase.jsonl")
set -x
"$lmlab" world generate --preset "$preset" --out "$run/world" --seed "$seed"
"$lmlab" tokenizer train --input "$run/world/crawl" --vocab-size 2048 --out "$run/tokenizer.json"
"$lmlab" data prepare --input "$run/world/crawl" --tokenizer "$run/tokenizer.json" --out "$run/data"
"$lmlab" pretrain --config "$preset" --data "$run/data" --out "$run/base"
"$lmlab" eval qa --model "$run/base" --questions "${questions[@]}" --out "$run/eval/base"
"$lmlab" sft --config "$preset" --base "$run/base" --data "$run/world/sft.jsonl" --out "$run/sft"
"$lmlab" eval qa --model "$run/sft" --chat --questions "${questions[@]}" --out "$run/eval/sft"
"$lmlab" sft --config "$preset" --base "$run/base" --data "$run/world/sft.jsonl" --out "$run/lora" --lora-rank 16 --lora-alpha 32 --lr 3e-3
"$lmlab" eval qa --model "$run/lora" --chat --questions "${questions[@]}" --out "$run/eval/lora"
"$lmlab" sft --config "$preset" --base "$run/base" --data "$run/world/sft.jsonl" --out "$run/sft-rtuning" --abstain-from-model "$run/base"
"$lmlab" eval qa --model "$run/sft-rtuning" --chat --questions "${questions[@]}" --out "$run/eval/sft-rtuning"
# The reward model (from the base) and DPO (from the SFT model) on the world's preference pairs,
# held out by entity; the reward model also scores the evaluation facts' true-vs-false pairs,
# hh-rlhf's test pairs for the record.
hh=../shared/data/chat/hh-rlhf-harmless-base-test.jsonl.gz
"$lmlab" reward train --config "$preset" --base "$run/base" --data "$run/world/preferences.jsonl" --eval-data "$hh" --out "$run/rm"
"$lmlab" reward eval --model "$run/rm" --data "$run/world/eval/fact_pairs.jsonl" --scores "$run/eval/fact_pair_scores.jsonl"
"$lmlab" dpo --config "$preset" --policy "$run/sft" --data "$run/world/preferences.jsonl" --out "$run/dpo"
"$lmlab" eval qa --model "$run/dpo" --chat --questions "${questions[@]}" --out "$run/eval/dpo"
# One frequent fact's question, asked of the tuned model.
question=$(grep '"bucket":"11+"' "$run/world/eval/facts.jsonl" | head -1 | sed 's/.*"question":"\([^"]*\)".*/\1/')
"$lmlab" generate --model "$run/sft" --chat --prompt "$question" --max-tokens 40
