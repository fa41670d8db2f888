#!/usr/bin/env bash
# Q-ROAR search cost against one evaluation of the same dev windows (docs/performance.md): alternating runs,
# 3 repetitions; prints "<run> <seconds> <evaluations> <final objective>". Needs ./build/qroar and ../shared/data.
cd "$(dirname "$0")/.."
set -euo pipefail
M=../shared/data/models/gutenberg-3m/model-f32.gguf T=../shared/data/text/gutenberg/pg2701-moby-dick.txt
Q=kv:k4v4:token:g64:post-rope
S="./build/qroar search --model $M --rope ntk --factor 4 --ctx 1024 --quant $Q --dev $T --dev-windows 2 --granularity per_layer --grid-points 9 --passes 1 --json -q"
sec() { python3 -c "import sys,json; d=json.load(sys.stdin); print(round(d['seconds'],3), d.get('evaluations',''), d.get('final_objective',''))"; }
for rep in 1 2 3; do
  echo "eval $(./build/qroar eval --model $M --rope ntk --factor 4 --ctx 1024 --quant $Q --text $T --max-windows 2 --json -q | sec)"
  echo "dev_nll $($S --objective dev_nll | sec)"
  echo "dev_nll_c2f $($S --objective dev_nll --grid-strategy coarse_to_fine | sec)"
  echo "layer_local $($S --objective layer_local | sec)"
  echo "layer_local_noguard $($S --objective layer_local --no-guard | sec)"
  echo "layer_local_c2f $($S --objective layer_local --grid-strategy coarse_to_fine | sec)"
  echo "layer_local_c2f_noguard $($S --objective layer_local --grid-strategy coarse_to_fine --no-guard | sec)"
  echo "layer_local_c2f_guard1 $($S --objective layer_local --grid-strategy coarse_to_fine --guard-chunks 1 | sec)"
  echo "layer_local_guard1 $($S --objective layer_local --guard-chunks 1 | sec)"
  echo "layer_local_refine2_noguard $($S --objective layer_local --refine 2 --no-guard | sec)"
done
