#!/usr/bin/env python3
"""Reproduces docs/results.md: perplexity of full-precision, quantized and quantized + Q-ROAR models under RoPE
interpolation, at the trained and at the extended context, on held-out text.

  /usr/bin/python3 bench/results.py --qroar build/qroar --shared ../shared --out bench/results.jsonl
  /usr/bin/python3 bench/results.py --table bench/results.jsonl   # the table of docs/results.md
  /usr/bin/python3 bench/results.py --summary bench/results.jsonl # medians per model, quantizer kind and variant
  /usr/bin/python3 bench/results.py --compare A.jsonl B.jsonl    # two search settings side by side

Every setting: model x interpolation (linear, ntk, yarn) x factor (4, 8) x quantizer. For each:
  fp / quantized perplexity at the trained context L0 and at the extended context s*L0 on the evaluation text;
  for each scale variant (symmetric, query_only, independent): `qroar search` on the dev text (acceptance on a
  validation text), then `qroar eval --scales` on the evaluation text at both contexts.
Dev, validation and evaluation texts are disjoint (different documents, or different parts of one stream, checked
for shared 64-token runs below). Only the standard library is needed.
"""
import argparse, json, os, subprocess, sys, tempfile, time

MODELS = {
    # name: (model file, tokenizer or None, trained ctx, head_dim)
    "stories260K": ("data/models/stories260K/stories260K.bin", None, 512, 8),
    "llama2xs": ("data/models/llama2xs-tinystories/model.bin", "data/models/stories260K/tok512.bin", 256, 8),
    "gutenberg-3m": ("data/models/gutenberg-3m/model.bin", None, 256, 64),
}
QUANTS = {
    "rtn-w4-g32": "rtn:w4:g32:sym",
    "rtn-w3-g32": "rtn:w3:g32:sym",
    "ggml-q4_0": "ggml:q4_0",
    "ggml-q4_K": "ggml:q4_K",        # rows must be multiples of 256: gutenberg-3m only
    "kv4-token": "kv:k4v4:token:g{hd}:post-rope",
}


def texts(shared, model, tmp, ctx):
    """(dev files, validation files, evaluation files) as token-id or text files."""
    if model in ("stories260K", "llama2xs"):
        ts = os.path.join(shared, "data/text/tinystories/tinystories_validation_head.txt")
        raw = open(ts, encoding="utf-8").read()
        tail = os.path.join(tmp, "tinystories_tail.txt")   # validation: the last ~150 KB of the stream
        with open(tail, "w", encoding="utf-8") as f:
            f.write(raw[-150000:])
        dev = os.path.join(shared, "reference/windows/s260_dev_2048.txt")
        if ctx > 2048:
            # the 2048-token dev window cannot hold one window: characters 100,000-600,000 of the stream, after
            # every reference window (dev, eval and hidden windows lie in its first ~60,000 characters) and
            # before the validation tail
            dev = os.path.join(tmp, "tinystories_middle.txt")
            with open(dev, "w", encoding="utf-8") as f:
                f.write(raw[100000:600000])
        return ([dev], [tail], [os.path.join(shared, "reference/windows/s260_eval_12288.txt")])
    g = os.path.join(shared, "data/text")
    moby = open(os.path.join(g, "gutenberg/pg2701-moby-dick.txt"), encoding="utf-8-sig").read()
    start = moby.find("*** START OF TH")
    body = moby[moby.find("\n", start) + 1:moby.find("*** END OF TH")]
    half = len(body) // 2
    dev_moby, val_moby = os.path.join(tmp, "moby_first.txt"), os.path.join(tmp, "moby_second.txt")
    open(dev_moby, "w", encoding="utf-8").write(body[:half])
    open(val_moby, "w", encoding="utf-8").write(body[half:])
    return ([dev_moby, os.path.join(g, "govreport/leval_govreport_00.txt")],
            [val_moby, os.path.join(g, "govreport/leval_govreport_08.txt")],
            [os.path.join(shared, "reference/windows/g3m_frankenstein_16k.txt"),
             os.path.join(g, "govreport/leval_govreport_10.txt")])


def run(cmd):
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(" ".join(cmd) + "\n" + p.stderr)
    return json.loads(p.stdout), time.time() - t


def evaluate(args, base, files, ctx, windows, per_file=None):
    """Token-weighted mean NLL over the evaluation files; per_file (a dict), when given, receives each file's own
    mean NLL under its base name."""
    total, tokens = 0.0, 0
    for f in files:
        kind = "--tokens" if f.endswith(".txt") and "windows" in f else "--text"
        out, _ = run(base + [kind, f, "--ctx", str(ctx), "--max-windows", str(windows), "--json", "-q"])
        total += out["mean_nll"] * out["tokens_scored"]
        tokens += out["tokens_scored"]
        if per_file is not None:
            per_file[os.path.basename(f)] = out["mean_nll"]
    return total / tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qroar", default="build/qroar")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="results.jsonl")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quants", default=",".join(QUANTS))
    ap.add_argument("--ropes", default="linear,ntk,yarn")
    ap.add_argument("--factors", default="4,8")
    ap.add_argument("--variants", default="symmetric,query_only,independent")
    ap.add_argument("--eval-windows", type=int, default=2, help="windows per evaluation file (docs/results.md: 2)")
    ap.add_argument("--grid", default="0.25,4,9", help="min,max,points")
    ap.add_argument("--refine", type=int, default=0,
                    help="qroar search --refine: bisection steps around each band's best grid factor (default 0; "
                         "docs/results.md compares 2)")
    ap.add_argument("--validation-rule", default="each_window", choices=["each_window", "pooled"],
                    help="qroar search --validation-rule: each_window (default) rejects a step that makes any "
                         "validation window worse; pooled only looks at their mean")
    ap.add_argument("--table", help="print the markdown table of a results file and exit")
    ap.add_argument("--summary", help="print the per-kind medians and counts of a results file and exit")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="print the best variant's held-out change per setting in two results files and exit")
    a = ap.parse_args()
    if a.table:
        return table(a.table)
    if a.summary:
        return summary(a.summary)
    if a.compare:
        return compare(*a.compare)
    gmin, gmax, gpts = a.grid.split(",")
    done = set()
    if os.path.exists(a.out):
        for line in open(a.out):
            r = json.loads(line)
            done.add((r["model"], r["rope"], r["factor"], r["quant"]))
    tmp = tempfile.mkdtemp(prefix="qroar-results-")
    for model in a.models.split(","):
        path, tok, l0, hd = MODELS[model]
        for rope in a.ropes.split(","):
            for factor in [int(x) for x in a.factors.split(",")]:
                ctx = factor * l0
                dev, val, ev = texts(a.shared, model, tmp, ctx)
                for qname in a.quants.split(","):
                    if qname == "ggml-q4_K" and hd < 64:
                        continue  # rows of 64 cannot hold 256-element K-quant blocks
                    if (model, rope, factor, qname) in done:
                        continue
                    spec = QUANTS[qname].format(hd=hd)
                    base = [a.qroar, "eval", "--model", os.path.join(a.shared, path)]
                    if tok:
                        base += ["--tokenizer", os.path.join(a.shared, tok)]
                    rope_args = ["--rope", rope, "--factor", str(factor)]
                    row = {"model": model, "rope": rope, "factor": factor, "quant": qname, "spec": spec,
                           "original_ctx": l0, "ctx": ctx, "validation_rule": a.validation_rule, "refine": a.refine}
                    t0 = time.time()
                    for label, extra in (("fp", []), ("quantized", ["--quant", spec])):
                        row[label + "_long_files"], row[label + "_short_files"] = {}, {}
                        row[label + "_long"] = evaluate(a, base + rope_args + extra, ev, ctx, a.eval_windows,
                                                        row[label + "_long_files"])
                        row[label + "_short"] = evaluate(a, base + rope_args + extra, ev, l0, 2 * a.eval_windows,
                                                         row[label + "_short_files"])
                    row["variants"] = {}
                    for variant in a.variants.split(","):
                        scales = os.path.join(tmp, f"{model}-{rope}-{factor}-{qname}-{variant}.json")
                        cmd = [a.qroar, "search", "--model", os.path.join(a.shared, path), "--ctx", str(ctx),
                               "--quant", spec, "--variant", variant, "--grid-min", gmin, "--grid-max", gmax,
                               "--grid-points", gpts, "--dev-windows", "3", "--validation-windows", "2",
                               "--validation-rule", a.validation_rule, "--refine", str(a.refine), "-o", scales,
                               "--json", "-q"] + rope_args
                        if tok:
                            cmd += ["--tokenizer", os.path.join(a.shared, tok)]
                        for f in dev:
                            cmd += ["--dev", f]
                        for f in val:
                            cmd += ["--validation", f]
                        res, secs = run(cmd)
                        v = {"skipped": res["skipped"], "message": res["message"], "search_seconds": secs,
                             "evaluations": res["evaluations"], "dev_before": res["baseline_objective"],
                             "dev_after": res["final_objective"]}
                        if not res["skipped"]:
                            v["scales"] = res["scales"]["units"]
                            v["long_files"], v["short_files"] = {}, {}
                            v["long"] = evaluate(a, base + rope_args + ["--quant", spec, "--scales", scales], ev, ctx,
                                                 a.eval_windows, v["long_files"])
                            v["short"] = evaluate(a, base + rope_args + ["--quant", spec, "--scales", scales], ev, l0,
                                                  2 * a.eval_windows, v["short_files"])
                        row["variants"][variant] = v
                    row["seconds"] = time.time() - t0
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{model} {rope} x{factor} {qname}: done in {row['seconds']:.0f} s", file=sys.stderr)


def table(path):
    import math
    rows = [json.loads(l) for l in open(path)]
    order = lambda r: (list(MODELS).index(r["model"]), ["linear", "ntk", "yarn"].index(r["rope"]), r["factor"],
                       list(QUANTS).index(r["quant"]))
    rows.sort(key=order)
    print("| model | RoPE | ctx | quantizer | FP | quantized | symmetric | query_only | independent | best vs FP | "
          "short ctx: FP / quantized / best Q-ROAR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ppl = lambda x: math.exp(x)
        q = ppl(r["quantized_long"])
        cells = []
        best_short = None
        for v in ("symmetric", "query_only", "independent"):
            x = r["variants"].get(v)
            if x is None:
                cells.append("—")
            elif x["skipped"]:
                cells.append("no-op (skipped)")
            else:
                p = ppl(x["long"])
                cells.append(f"{p:.3f} ({100 * (p / q - 1):+.1f}%)")
                if best_short is None or x["long"] < best_short[0]:
                    best_short = (x["long"], ppl(x["short"]))
        short = f"{ppl(r['fp_short']):.3f} / {ppl(r['quantized_short']):.3f} / " + (
            f"{best_short[1]:.3f}" if best_short else "—")
        # the best variant against full precision: below 0 the band factors did more than close the quantization
        # gap (a per-band attention temperature also corrects the interpolation of the FP model)
        vs_fp = f"{100 * (ppl(best_short[0]) / ppl(r['fp_long']) - 1):+.1f}%" if best_short else "—"
        print(f"| {r['model']} | {r['rope']} ×{r['factor']} | {r['ctx']} | {r['spec']} | {ppl(r['fp_long']):.3f} | "
              f"{q:.3f} | " + " | ".join(cells) + f" | {vs_fp} | {short} |")


def summary(path):
    """Medians (and ranges) of the held-out change relative to the quantized model per model, quantizer kind and
    variant; settings where the best variant beats FP; searches that made held-out text > 0.5% worse."""
    import math, statistics
    rows = [json.loads(l) for l in open(path)]
    kinds = {}
    beats_fp, worse, short_worse, doc_worse, ran = 0, [], [], [], 0
    for r in rows:
        kind = "KV4 per token" if r["quant"].startswith("kv") else "weights"
        best = None
        for v, x in r["variants"].items():
            if x["skipped"]:
                continue
            ran += 1
            d = math.exp(x["long"] - r["quantized_long"]) - 1
            kinds.setdefault((r["model"], kind, v), []).append(d)
            if d > 0.005:
                worse.append(f"{r['model']} {r['rope']} x{r['factor']} {r['quant']} {v} {100 * d:+.1f}%")
            # the short-context promise: held-out perplexity at the trained context within +0.5% of the quantized
            # model's (the guard checks it on the validation windows, this on the evaluation text)
            ds = math.exp(x["short"] - r["quantized_short"]) - 1
            if ds > 0.005:
                short_worse.append(f"{r['model']} {r['rope']} x{r['factor']} {r['quant']} {v} {100 * ds:+.1f}%")
            # each held-out document on its own (rows measured with per-file NLLs; gutenberg-3m has two)
            for length in ("long", "short"):
                for f, nll in x.get(length + "_files", {}).items():
                    dd = math.exp(nll - r["quantized_" + length + "_files"][f]) - 1
                    if dd > 0.005:
                        doc_worse.append(f"{r['model']} {r['rope']} x{r['factor']} {r['quant']} {v} {length} {f} "
                                         f"{100 * dd:+.1f}%")
            if best is None or x["long"] < best:
                best = x["long"]
        if best is not None and best < r["fp_long"]:
            beats_fp += 1
    print("| model | quantizer kind | variant | settings | median | range | worse > 0.5% |")
    print("|---|---|---|---|---|---|---|")
    for (model, kind, v), ds in sorted(kinds.items(), key=lambda kv: (list(MODELS).index(kv[0][0]), kv[0][1], kv[0][2])):
        print(f"| {model} | {kind} | {v} | {len(ds)} | {100 * statistics.median(ds):+.1f}% | "
              f"{100 * min(ds):+.1f} … {100 * max(ds):+.1f}% | {sum(d > 0.005 for d in ds)} |")
    print(f"\n{len(rows)} settings, {ran} searches run; the best variant beats FP in {beats_fp} settings; "
          f"{len(worse)} searches made held-out text > 0.5% worse:")
    for w in worse:
        print("  " + w)
    print(f"{len(short_worse)} searches raised held-out short-context perplexity by > 0.5%:")
    for w in short_worse:
        print("  " + w)
    print(f"{len(doc_worse)} (search, held-out document, length) made > 0.5% worse, each document on its own:")
    for w in doc_worse:
        print("  " + w)
    rules = sorted({r.get("validation_rule", "pooled") for r in rows})
    refine = sorted({r.get("refine", 0) for r in rows})
    print(f"validation rule(s): {', '.join(rules)}; refine: {', '.join(map(str, refine))}")


def compare(path_a, path_b):
    """Held-out long-context change (relative to the quantized model) of the best variant per setting, in two
    results files measured under different search settings, side by side; and the medians per model and kind."""
    import math, statistics
    def best(path):
        out = {}
        for r in map(json.loads, open(path)):
            ds = [math.exp(x["long"] - r["quantized_long"]) - 1 for x in r["variants"].values() if not x["skipped"]]
            out[(r["model"], r["rope"], r["factor"], r["quant"])] = min(ds + [0.0])
        return out
    a, b = best(path_a), best(path_b)
    keys = sorted(set(a) & set(b), key=lambda k: (list(MODELS).index(k[0]), k[1], k[2], list(QUANTS).index(k[3])))
    print(f"| setting | {os.path.basename(path_a)} | {os.path.basename(path_b)} |")
    print("|---|---|---|")
    for k in keys:
        print(f"| {k[0]} {k[1]} ×{k[2]} {k[3]} | {100 * a[k]:+.1f}% | {100 * b[k]:+.1f}% |")
    groups = {}
    for k in keys:
        groups.setdefault((k[0], "KV4" if k[3].startswith("kv") else "weights"), []).append(k)
    print("\n| model | kind | settings | median A | median B | B better / worse by > 0.5 points |")
    print("|---|---|---|---|---|---|")
    for (model, kind), ks in groups.items():
        better = sum(b[k] < a[k] - 0.005 for k in ks)
        worse = sum(b[k] > a[k] + 0.005 for k in ks)
        print(f"| {model} | {kind} | {len(ks)} | {100 * statistics.median(a[k] for k in ks):+.1f}% | "
              f"{100 * statistics.median(b[k] for k in ks):+.1f}% | {better} / {worse} |")


if __name__ == "__main__":
    main()
