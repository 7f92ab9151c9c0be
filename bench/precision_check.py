#!/usr/bin/env python3
"""Mixed precision against f32 on the same data: does bf16 training stay within f32's seed spread?

Pretrains configs/tiny.toml (or --config) for --steps steps three times in f32 (seeds 1, 2, 3)
and once per seed in bf16 (`lmlab pretrain --precision bf16`), then compares, at every logged
step, the training loss averaged over windows of --window steps, and the held-out losses. The
f32 runs' minimum and maximum give the spread; the table marks each bf16 point inside or out.

Usage: bench/precision_check.py --data runs/world/data --tokenizer runs/world/tokenizer.json
       [--lmlab target/release/lmlab] [--steps 300] [--out /tmp/precision-check]
"""
import argparse
import json
import os
import subprocess
import statistics


def run(lmlab, cfg, data, tok, out, seed, precision, steps):
    folder = os.path.join(out, f"{precision}-seed{seed}")
    if not os.path.exists(os.path.join(folder, "done")):
        # pretrain writes metrics.jsonl beside its checkpoint folder: one run folder each.
        subprocess.run([lmlab, "pretrain", "--config", cfg, "--data", data, "--tokenizer", tok, "--out", os.path.join(folder, "base"),
                        "--max-steps", str(steps), "--seed", str(seed), "--precision", precision], check=True,
                       stdout=subprocess.DEVNULL)
        open(os.path.join(folder, "done"), "w").close()
    rows = [json.loads(l) for l in open(os.path.join(folder, "metrics.jsonl"))]
    train = {r["step"]: r["loss"] for r in rows if "loss" in r}
    evals = {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}
    return train, evals


def windows(train, width):
    steps = sorted(train)
    out = {}
    for end in steps:
        if end % width == 0:
            vals = [train[s] for s in steps if end - width < s <= end]
            out[end] = statistics.mean(vals)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lmlab", default=os.path.expanduser("~/.cache/lmlab-target/release/lmlab"))
    ap.add_argument("--config", default="configs/tiny.toml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--out", default="/tmp/precision-check")
    a = ap.parse_args()
    seeds = [1, 2, 3]
    f32 = [run(a.lmlab, a.config, a.data, a.tokenizer, a.out, s, "f32", a.steps) for s in seeds]
    bf16 = [run(a.lmlab, a.config, a.data, a.tokenizer, a.out, s, "bf16", a.steps) for s in seeds]
    inside = total = 0
    print(f"| step | measure | f32 seeds 1-3 (min-max) | bf16 seeds 1-3 | inside the f32 spread |")
    print("| ---: | --- | --- | --- | --- |")
    for label, pick in [(f"train loss, mean of {a.window} steps", lambda r: windows(r[0], a.window)), ("held-out loss", lambda r: r[1])]:
        fs, bs = [pick(r) for r in f32], [pick(r) for r in bf16]
        for step in sorted(set.intersection(*(set(x) for x in fs + bs))):
            lo, hi = min(f[step] for f in fs), max(f[step] for f in fs)
            marks = [lo <= b[step] <= hi for b in bs]
            inside, total = inside + sum(marks), total + len(marks)
            print(f"| {step} | {label} | {lo:.4f}-{hi:.4f} | {', '.join(f'{b[step]:.4f}' for b in bs)} | {sum(marks)} of {len(marks)} |")
    print(f"\nbf16 points inside the f32 seeds' spread: {inside} of {total}")


if __name__ == "__main__":
    main()
