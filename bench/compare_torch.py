#!/usr/bin/env python3
"""qroar eval vs plain eager PyTorch fp32: tokens per second on the same model, token stream and context.

The PyTorch side reads the same llama2.c model.bin (parsed with numpy/struct here) and runs the forward pass a user
would write in eager PyTorch, as in karpathy/llama2.c model.py: F.linear projections, RoPE on (x, y) pairs by
reshape/unbind, repeat_kv for GQA, scores = q k^T / sqrt(hd) + causal mask, softmax, @ v (PyTorch 1.13 has no
F.scaled_dot_product_attention; with a newer torch, --sdpa uses it), SwiGLU FFN, tied classifier,
F.cross_entropy. fp32, torch.set_num_threads(threads), torch.inference_mode(). Windows are non-overlapping,
each scores tokens 1 .. ctx-1, like `qroar eval --tokens` (stride = ctx).

Both sides run in the same invocation, alternating (torch, qroar) `--repeat` times; the medians and their ratio
are printed. The mean NLLs must agree to 1e-4 relative or the script fails.

Run with Debian's python (torch + numpy): /usr/bin/python3 bench/compare_torch.py --ctx 1024
"""
import argparse
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = n_kv_heads * hd
    arr = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = torch.from_numpy(arr[pos:pos + n].reshape(shape).copy())
        pos += n
        return out

    w = {"tok": take(vocab, dim), "att_norm": take(n_layers, dim), "wq": take(n_layers, dim, dim),
         "wk": take(n_layers, kv_dim, dim), "wv": take(n_layers, kv_dim, dim), "wo": take(n_layers, dim, dim),
         "ffn_norm": take(n_layers, dim), "w1": take(n_layers, hidden, dim), "w2": take(n_layers, dim, hidden),
         "w3": take(n_layers, hidden, dim), "final_norm": take(dim)}
    take(seq_len, hd // 2)  # freq_cis_real
    take(seq_len, hd // 2)  # freq_cis_imag
    w["cls"] = w["tok"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab=vocab,
               head_dim=hd, eps=1e-5, theta=10000.0)
    return cfg, w


def rope_tables(hd, n, theta):
    # angles in float64 (as qroar's rope_table), then float32
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.outer(np.arange(n, dtype=np.float64), inv)
    return torch.from_numpy(np.cos(ang).astype(np.float32)), torch.from_numpy(np.sin(ang).astype(np.float32))


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def apply_rotary_emb(x, cos, sin):
    # x: (B, T, H, hd), interleaved pairs (2j, 2j+1), llama2.c model.py
    xr, xi = x.float().reshape(x.shape[:-1] + (-1, 2)).unbind(-1)
    c = cos.view(1, cos.shape[0], 1, cos.shape[1])
    s = sin.view(1, sin.shape[0], 1, sin.shape[1])
    return torch.stack([xr * c - xi * s, xr * s + xi * c], dim=-1).flatten(3)


def repeat_kv(x, n_rep):
    b, t, h, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, :, None, :].expand(b, t, h, n_rep, d).reshape(b, t, h * n_rep, d)


def window_mean_nll(cfg, w, tokens, cos, sin, mask, sdpa):
    T = tokens.shape[1]
    hd, H, KV = cfg["head_dim"], cfg["n_heads"], cfg["n_kv_heads"]
    h = F.embedding(tokens, w["tok"])
    for l in range(cfg["n_layers"]):
        x = rmsnorm(h, w["att_norm"][l], cfg["eps"])
        q = F.linear(x, w["wq"][l]).view(1, T, H, hd)
        k = F.linear(x, w["wk"][l]).view(1, T, KV, hd)
        v = F.linear(x, w["wv"][l]).view(1, T, KV, hd)
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
            o = torch.matmul(F.softmax(scores.float(), dim=-1), v)
        o = o.transpose(1, 2).contiguous().view(1, T, H * hd)
        h = h + F.linear(o, w["wo"][l])
        x = rmsnorm(h, w["ffn_norm"][l], cfg["eps"])
        h = h + F.linear(F.silu(F.linear(x, w["w1"][l])) * F.linear(x, w["w3"][l]), w["w2"][l])
    h = rmsnorm(h, w["final_norm"], cfg["eps"])
    logits = F.linear(h, w["cls"])
    return F.cross_entropy(logits[0, :-1], tokens[0, 1:]).item()


def run_torch(cfg, w, stream, ctx, sdpa):
    n_win = len(stream) // ctx
    cos, sin = rope_tables(cfg["head_dim"], ctx, cfg["theta"])
    mask = torch.triu(torch.full((ctx, ctx), float("-inf")), diagonal=1)
    t0 = time.perf_counter()
    nll = []
    with torch.inference_mode():
        for i in range(n_win):
            tok = torch.tensor(stream[i * ctx:(i + 1) * ctx], dtype=torch.long).view(1, ctx)
            nll.append(window_mean_nll(cfg, w, tok, cos, sin, mask, sdpa))
    secs = time.perf_counter() - t0
    return sum(nll) / len(nll), n_win * ctx / secs


def run_qroar(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    if cmd[1] == "eval":
        j = json.loads(out.strip().splitlines()[-1])
        return j["mean_nll"], j["tokens_per_second"]
    j = json.loads(out)  # bench_eval --benchmark_format=json
    b = j["benchmarks"][0]
    return b["mean_nll"], b["tokens_per_second"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=os.path.join(SHARED, "data/models/gutenberg-3m/model.bin"))
    ap.add_argument("--tokens", default=os.path.join(SHARED, "reference/windows/g3m_frankenstein_16k.txt"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="qroar build folder")
    ap.add_argument("--sdpa", action="store_true", help="F.scaled_dot_product_attention (torch >= 2.0)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    cfg, w = load_llama2c(a.model)
    with open(a.tokens) as f:
        stream = [int(t) for t in f.read().split()]
    cli = os.path.join(a.build, "qroar")
    cmd = [cli, "eval", "--model", a.model, "--tokens", a.tokens, "--ctx", str(a.ctx), "--threads",
           str(a.threads), "--json"]
    try:
        run_qroar(cmd)  # also the qroar warm-up
    except (OSError, subprocess.CalledProcessError) as e:
        # the library API through Google Benchmark: the same evaluate_perplexity call `qroar eval` makes
        print(f"note: `qroar eval` unavailable ({e}); using bench_eval")
        cmd = [os.path.join(a.build, "bench", "bench_eval"), f"--benchmark_filter=BM_Eval/{a.ctx}/{a.threads}/",
               "--benchmark_format=json"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"attention: {'F.scaled_dot_product_attention' if a.sdpa else 'matmul + mask + softmax'}")
    print(f"qroar: {' '.join(cmd)}")
    run_torch(cfg, w, stream[:2 * a.ctx], a.ctx, a.sdpa)  # warm-up
    t_tps, q_tps = [], []
    for r in range(a.repeat):
        t_nll, tps = run_torch(cfg, w, stream, a.ctx, a.sdpa)
        t_tps.append(tps)
        q_nll, tps = run_qroar(cmd)
        q_tps.append(tps)
        print(f"  run {r + 1}: torch {t_tps[-1]:9.0f} tok/s (mean NLL {t_nll:.6f})   "
              f"qroar {q_tps[-1]:9.0f} tok/s (mean NLL {q_nll:.6f})")
    rel = abs(t_nll - q_nll) / abs(q_nll)
    tm, qm = statistics.median(t_tps), statistics.median(q_tps)
    print(f"ctx {a.ctx}, {len(stream) // a.ctx} windows: torch {tm:.0f} tok/s, qroar {qm:.0f} tok/s, "
          f"ratio {qm / tm:.2f}x (medians of {a.repeat}); mean NLL rel. difference {rel:.1e}")
    if rel > 1e-4:
        print("FAIL: the two forward passes disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
