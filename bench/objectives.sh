#!/usr/bin/env bash
# The evidence behind the default objective (docs/results.md, "Objectives"): per setting, `qroar search` with each
# objective, then `qroar eval` of the full-precision and the quantized model, each without and with the scales, on
# documents neither the models nor the search saw, at the extended and at the trained context; summary per document.
#   bash bench/objectives.sh build/qroar ../shared OUTDIR
# Settings: stories260K YaRN x4 at 2048 (RTN W4 g32; K4V4 per token) and gutenberg-3m YaRN x4 at 1024 (K4V4 per
# token). Only bash and python3 are needed; about 25 minutes on 2 busy cores.
set -euo pipefail
Q=$(realpath "$1"); S=$(realpath "$2"); OUT=$3
mkdir -p "$OUT"; cd "$OUT"
python3 - "$S" <<'PY'
import sys
S = sys.argv[1]
raw = open(S + "/data/text/tinystories/tinystories_validation_head.txt", encoding="utf-8").read()
open("ts_tail.txt", "w").write(raw[-150000:])         # validation: the last ~150 KB (as results.py)
open("ts_mid_doc.txt", "w").write(raw[100000:220000])  # unseen: after every reference window, before the tail
open("ts_doc3.txt", "w").write(raw[600000:720000])
moby = open(S + "/data/text/gutenberg/pg2701-moby-dick.txt", encoding="utf-8-sig").read()
s = moby.find("*** START OF TH"); body = moby[moby.find("\n", s) + 1:moby.find("*** END OF TH")]
h = len(body) // 2
open("moby_first.txt", "w").write(body[:h]); open("moby_second.txt", "w").write(body[h:])
PY
nll() { "$Q" eval "$@" --max-windows 8 --json -q | python3 -c "import json,sys;print(json.load(sys.stdin)['mean_nll'])"; }
# run NAME MODEL CTX SHORT QUANT "DEV..." "VAL..." "DOCS (--tokens F or --text F; ';'-separated)" SEARCHARGS...
run() {
  local name=$1 model=$2 ctx=$3 short=$4 quant=$5 dev=$6 val=$7 docs=$8; shift 8
  local R="--rope yarn --factor 4"
  # shellcheck disable=SC2086
  "$Q" search --model "$model" $R --quant "$quant" --ctx "$ctx" --dev $dev --validation $val "$@" -q --json > "$name.json"
  python3 -c "import json;r=json.load(open('$name.json'));json.dump(r['scales'],open('$name.scales.json','w'))"
  IFS=';' read -ra D <<< "$docs"
  for doc in "${D[@]}"; do
    for c in "$ctx" "$short"; do
      local line="$name ${doc##*/} $c"
      for qa in "" "--quant $quant"; do for sa in "" "--scales $name.scales.json"; do
        # shellcheck disable=SC2086
        line="$line $(nll --model "$model" $R $qa $sa $doc --ctx "$c")"
      done; done
      echo "$line"
    done
  done
}
M260=$S/data/models/stories260K/stories260K.bin; W=$S/reference/windows
D260="--tokens $W/s260_eval_12288.txt;--text $PWD/ts_mid_doc.txt;--text $PWD/ts_doc3.txt"
MG=$S/data/models/gutenberg-3m/model.bin; G=$S/data/text/govreport
DG="--tokens $W/g3m_frankenstein_16k.txt;--text $G/leval_govreport_02.txt;--text $G/leval_govreport_05.txt;--text $G/leval_govreport_10.txt"
{
  for q in rtn:w4:g32:sym kv:k4v4:token:g8:post-rope; do
    t=${q%%:*}
    run "s260-$t-dev_nll" "$M260" 2048 512 "$q" "$W/s260_dev_2048.txt" ts_tail.txt "$D260"
    run "s260-$t-kl_fp" "$M260" 2048 512 "$q" "$W/s260_dev_2048.txt" ts_tail.txt "$D260" --objective kl_fp
    run "s260-$t-layer_local" "$M260" 2048 512 "$q" "$W/s260_dev_2048.txt" ts_tail.txt "$D260" --objective layer_local --refine 2
  done
  q=kv:k4v4:token:g64:post-rope
  run "g3m-kv-dev_nll" "$MG" 1024 256 "$q" "moby_first.txt $G/leval_govreport_00.txt" "moby_second.txt $G/leval_govreport_08.txt" "$DG"
  run "g3m-kv-kl_fp" "$MG" 1024 256 "$q" "moby_first.txt $G/leval_govreport_00.txt" "moby_second.txt $G/leval_govreport_08.txt" "$DG" --objective kl_fp
  run "g3m-kv-layer_local" "$MG" 1024 256 "$q" "moby_first.txt $G/leval_govreport_00.txt" "moby_second.txt $G/leval_govreport_08.txt" "$DG" --objective layer_local --refine 2
} > nll.txt
python3 - <<'PY'
import math
# per line: run, document, ctx, mean NLL of fp, fp + scales, quantized, quantized + scales
print("| run | document | ctx | quantization gap | quantized + scales | full precision + scales (control) | quantization-specific |")
print("|---|---|---|---|---|---|---|")
for l in open("nll.txt"):
    n, doc, ctx, fp, fps, q, qs = l.split()
    fp, fps, q, qs = map(float, (fp, fps, q, qs))
    gap, dq, dfp = math.exp(q - fp) - 1, math.exp(qs - q) - 1, math.exp(fps - fp) - 1
    print("| %s | %s | %s | %+.2f%% | %+.2f%% | %+.2f%% | %+.2f%% |" % (n, doc, ctx, 100 * gap, 100 * dq, 100 * dfp, 100 * (dq - dfp)))
PY
