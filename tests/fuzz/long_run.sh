#!/usr/bin/env bash
# Long fuzzing runs (docs/reliability.md): each named harness runs RUNS inputs (default 10 million) at nice 19 on
# the corpus that `ctest -L fuzz` grew, one after the other, logging to LOGDIR/<harness>.log. The timeout is
# wall-clock time: at nice 19 on a busy machine a harness can be descheduled for tens of seconds, so it is 600 s
# here (20 s under CTest); slow inputs still show in stat::slowest_unit_time_sec.
# Usage: tests/fuzz/long_run.sh <build-dir> <harness>...   e.g. tests/fuzz/long_run.sh build-fuzz gguf llama2c
set -uo pipefail
build=$(cd "$1" && pwd)
shift
runs=${RUNS:-10000000}
fuzz="$build/tests/fuzz"
logdir=${LOGDIR:-$fuzz/long-run}
mkdir -p "$logdir"
for h in "$@"; do
  case $h in
    gguf|gguf_vocab|safetensors|hf_folder|llama2c|llama2c_tokenizer) max_len=8192 ;;
    *) max_len=4096 ;;
  esac
  mkdir -p "$fuzz/corpus/$h" "$fuzz/corpus/crashes-$h"
  start=$(date +%s)
  ( cd "$fuzz/corpus/crashes-$h" &&
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 nice -n 19 "$fuzz/fuzz_$h" -runs="$runs" -max_len=$max_len \
      -timeout=600 -rss_limit_mb=2048 -print_final_stats=1 "$fuzz/corpus/$h" "$fuzz/corpus/seeds/$h" ) \
    > "$logdir/$h.log" 2>&1
  rc=$?
  echo "$h rc=$rc seconds=$(( $(date +%s) - start )) $(grep -E 'stat::number_of_executed_units' "$logdir/$h.log")" \
    >> "$logdir/summary.txt"
done
