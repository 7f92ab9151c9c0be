#!/usr/bin/env python3
"""PyTorch reference for `lmlab bench train`: the same architecture and the same training step.

Reads an lmlab preset (configs/*.toml) and times forward, loss, backward, global-norm clipping
and an AdamW step on random tokens, on CPU with a fixed thread count. Architecture choices
mirror lmlab-model: LayerNorm or RMSNorm (pre-norm), GELU (tanh) or SwiGLU, learned or rotary
("rotate half") positions, grouped-query attention, tied or untied embeddings, optional biases.
Weight decay applies to matrices only, as in lmlab-train.

--mode picks how PyTorch runs, the three ways the training-speed comparison measures:
  eager  f32, attention written out (scores, mask, softmax, weighted sum): PyTorch as the
         explicit code above reads;
  sdpa   f32, attention through F.scaled_dot_product_attention (its fused CPU kernel);
  bf16   sdpa under torch.autocast(bfloat16): matmuls in bf16 (oneDNN), weights and AdamW
         state in f32.
Runs with PyPI's torch 2.x (bench/torch_venv.sh sets one up; its CUDA build runs on the CPU)
or Debian's python3-torch 1.13, which has no SDPA or CPU autocast worth measuring (eager only).
"""
import argparse
import json
import math
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(cfg):
    if cfg["norm"] == "layernorm":
        return nn.LayerNorm(cfg["d_model"], eps=cfg.get("norm_eps", 1e-5), elementwise_affine=True)
    return RMSNorm(cfg["d_model"], cfg.get("norm_eps", 1e-5))


def rope_tables(T, hd, theta):
    inv = 1.0 / theta ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, sdpa):
        super().__init__()
        self.sdpa = sdpa
        d, self.h, self.hkv = cfg["d_model"], cfg["n_head"], cfg.get("n_kv_head") or cfg["n_head"]
        self.hd = d // self.h
        bias = cfg.get("bias", False)
        self.c_attn = nn.Linear(d, d + 2 * self.hkv * self.hd, bias=bias)
        self.c_proj = nn.Linear(d, d, bias=bias)
        self.rope = cfg["position"] == "rope"

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split([self.h * self.hd, self.hkv * self.hd, self.hkv * self.hd], dim=-1)
        q = q.view(B, T, self.h, self.hd).transpose(1, 2)
        k = k.view(B, T, self.hkv, self.hd).transpose(1, 2)
        v = v.view(B, T, self.hkv, self.hd).transpose(1, 2)
        if self.rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.h // self.hkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, self.h * self.hd))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.h * self.hd)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f, bias = cfg["d_model"], cfg["d_ff"], cfg.get("bias", False)
        self.swiglu = cfg["activation"] == "swiglu"
        if self.swiglu:
            self.gate, self.up, self.down = nn.Linear(d, f, bias=bias), nn.Linear(d, f, bias=bias), nn.Linear(f, d, bias=bias)
        else:
            self.c_fc, self.c_proj = nn.Linear(d, f, bias=bias), nn.Linear(f, d, bias=bias)

    def forward(self, x):
        if self.swiglu:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg, sdpa):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = make_norm(cfg), Attention(cfg, sdpa), make_norm(cfg), MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg, sdpa=False):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["d_model"])
        self.wpe = nn.Embedding(cfg["context_length"], cfg["d_model"]) if cfg["position"] == "learned" else None
        self.h = nn.ModuleList(Block(cfg, sdpa) for _ in range(cfg["n_layer"]))
        self.ln_f = make_norm(cfg)
        self.lm_head = None if cfg.get("tie_embeddings", True) else nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)
        cos, sin = rope_tables(cfg["context_length"], cfg["d_model"] // cfg["n_head"], cfg.get("rope_theta", 10000.0))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T))
        cos, sin = self.cos[:T], self.sin[:T]
        for b in self.h:
            x = b(x, cos, sin)
        x = self.ln_f(x)
        w = self.wte.weight if self.lm_head is None else self.lm_head.weight
        logits = x @ w.t()
        return F.cross_entropy(logits.view(B * T, -1).float(), targets.view(B * T))


def status_bytes(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in bytes, or None off Linux."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["eager", "sdpa", "bf16"], default="eager")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config, "rb") as f:
        preset = tomllib.load(f)
    cfg, train = preset["model"], preset.get("train", {})
    if not cfg.get("vocab_size"):
        cfg["vocab_size"] = a.vocab_size
    T = a.seq_len or cfg["context_length"]
    model = GPT(cfg, sdpa=a.mode != "eager")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mode == "bf16")
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.get("weight_decay", 0.1)}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train.get("lr", 1e-3), betas=(train.get("beta1", 0.9), train.get("beta2", 0.95)), eps=train.get("eps", 1e-8),
    )
    data = torch.randint(0, cfg["vocab_size"], (a.batch_size, T + 1))
    x, y = data[:, :T].contiguous(), data[:, 1:].contiguous()
    fwd = bwd = upd = 0.0
    saved_bytes, rss_growth, rss_before = 0, None, status_bytes("VmRSS")
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        with autocast:
            if i + 1 == a.warmup + a.steps:
                # The tensors autograd saves for backward, each buffer once (PyTorch's own
                # accounting hook); only on the last step, and outside the timed parts below.
                seen = {}
                def pack(t):
                    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                    return t
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    loss = model(x, y)
                param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
                saved_bytes = sum(n for ptr, n in seen.items() if ptr not in param_ptrs)
            else:
                loss = model(x, y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.get("grad_clip", 1.0))
        opt.step()
        t3 = time.perf_counter()
        if i == 0 and rss_before is not None:
            rss_growth = status_bytes("VmHWM") - rss_before
        if i >= a.warmup:
            fwd, bwd, upd = fwd + t1 - t0, bwd + t2 - t1, upd + t3 - t2
    step = (fwd + bwd + upd) / a.steps
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}", "mode": a.mode, "params": params, "batch_size": a.batch_size, "seq_len": T,
        "threads": torch.get_num_threads(), "ms_per_step": step * 1e3, "forward_ms": fwd / a.steps * 1e3,
        "backward_ms": bwd / a.steps * 1e3, "optimizer_ms": upd / a.steps * 1e3,
        "tokens_per_sec": a.batch_size * T / step, "final_loss": loss.item(),
        "activation_bytes": saved_bytes, "first_step_peak_rss_growth_bytes": rss_growth,
    }))


if __name__ == "__main__":
    main()
