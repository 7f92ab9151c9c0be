#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) as the reference for lmlab's GGUF inference.

Reads one JSON request on stdin, writes one JSON answer on stdout. Token ids go in and come out,
so both engines see exactly the same input.

  {"mode": "tokenize", "texts": [...]}                  -> {"ids": [[...], ...]}
  {"mode": "greedy", "prompts": [[ids]...], "n": 32}    -> {"continuations": [[ids]...],
                                                            "top": [[[[id, logit], ...k] per step] per prompt]}
  {"mode": "argmax", "ids": [...]}                      -> {"argmax": [...]}   (next token at every position)
  {"mode": "top", "ids": [...], "k": 5}                 -> {"top": [[[id, logit], ...k], ...]} at every position
  {"mode": "logits", "ids": [...], "at": [[ids]...]}    -> {"logits": [[...], ...]}   (the logits of the
                                                            tokens `at[i]` after the prefix ids[..=i])
  {"mode": "bench", "prompt_len": 512, "decode": 128}   -> prefill/decode tokens per second

"variant" (greedy, argmax, top, logits) picks how llama.cpp evaluates, to measure how much its own
results move between equally valid ways of computing them:
  "batch" (default): prompts in batches of 512 tokens, flash attention off;
  "serial": one token per evaluation (every position computed as a decode step);
  "flash": batches of 512 with flash attention on.

Usage: python3 bench/llamacpp.py MODEL.gguf [THREADS] < request.json
Install: pip install llama-cpp-python (builds llama.cpp from source; on CPUs that advertise AMX
or AVX-512 features a virtual machine does not really provide, build with
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF").
"""
import json
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def load(path, threads, n_ctx=2048, logits_all=False, variant="batch"):
    if variant not in ("batch", "serial", "flash"):
        raise SystemExit(f"unknown variant {variant!r}")
    batch = 1 if variant == "serial" else 512
    return Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                 n_batch=batch, n_ubatch=batch, flash_attn=variant == "flash",
                 logits_all=logits_all, verbose=False, seed=0)


def top_k(row, k):
    return [[int(t), float(row[t])] for t in np.argsort(-row)[:k]]


def last_logits(m):
    # Without logits_all, llama-cpp-python keeps no scores: read the last row from the context.
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(m.ctx, -1), shape=(m.n_vocab(),))


def last_argmax(m):
    return int(np.argmax(last_logits(m)))


def greedy(m, prompt, n, k):
    """n greedy tokens after `prompt`, and the k best logits at each step."""
    m.reset()
    m.eval(prompt)
    out, tops = [], []
    for _ in range(n):
        row = last_logits(m)
        tops.append(top_k(row, k))
        out.append(int(np.argmax(row)))
        m.eval([out[-1]])
    return out, tops


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    req = json.load(sys.stdin)
    mode = req["mode"]
    variant = req.get("variant", "batch")
    if mode == "tokenize":
        m = Llama(model_path=path, vocab_only=True, verbose=False)
        ans = {"ids": [m.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in req["texts"]]}
    elif mode == "greedy":
        m = load(path, threads, variant=variant)
        runs = [greedy(m, p, req.get("n", 32), req.get("k", 5)) for p in req["prompts"]]
        ans = {"continuations": [r[0] for r in runs], "top": [r[1] for r in runs]}
    elif mode == "argmax":
        ids = req["ids"]
        m = load(path, threads, n_ctx=max(2048, len(ids) + 8), logits_all=True, variant=variant)
        m.eval(ids)
        ans = {"argmax": [int(i) for i in np.argmax(m.scores[: len(ids)], axis=1)]}
    elif mode == "top":
        ids = req["ids"]
        k = req.get("k", 5)
        m = load(path, threads, n_ctx=max(2048, len(ids) + 8), logits_all=True, variant=variant)
        m.eval(ids)
        ans = {"top": [top_k(row, k) for row in np.array(m.scores[: len(ids)])]}
    elif mode == "logits":
        ids, at = req["ids"], req["at"]
        m = load(path, threads, n_ctx=max(2048, len(ids) + 8), logits_all=True, variant=variant)
        m.eval(ids)
        ans = {"logits": [[float(row[t]) for t in toks] for row, toks in zip(np.array(m.scores[: len(ids)]), at)]}
    elif mode == "bench":
        m = load(path, threads)
        prompt = [int(t) for t in req.get("ids", [])] or [100 + (i * 7919) % 40000 for i in range(req.get("prompt_len", 512))]
        m.eval(prompt[:8])  # warm-up
        m.reset()
        t0 = time.perf_counter()
        m.eval(prompt)
        t1 = time.perf_counter()
        n = req.get("decode", 128)
        for _ in range(n):
            m.eval([last_argmax(m)])
        t2 = time.perf_counter()
        ans = {
            "threads": threads,
            "prompt_tokens": len(prompt),
            "prefill_tokens_per_sec": len(prompt) / (t1 - t0),
            "time_to_first_token_secs": t1 - t0,
            "decode_tokens": n,
            "decode_tokens_per_sec": n / (t2 - t1),
        }
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    json.dump(ans, sys.stdout)


if __name__ == "__main__":
    main()
