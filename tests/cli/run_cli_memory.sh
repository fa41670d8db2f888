#!/bin/bash
# Bounded memory (issue 21, item 9), through the command line: run_cli_memory.sh QROAR SHARED WORK CASE
# Each case writes its hostile input into a fresh WORK folder (sparse where it can), runs qroar under GNU time and
# checks the exit code, the typed error on stderr and the peak resident memory (time's %M, KiB). Exit 0 (pass),
# 1 (fail) or 77 (skipped: no /usr/bin/time).
set -u
Q=$1 S=$2 WORK=$3 CASE=$4
M=$S/data/models/stories260K/stories260K.bin
W=$S/reference/windows
[ -x /usr/bin/time ] || { echo "skipped: /usr/bin/time (GNU time) is not installed"; exit 77; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

fail() { echo "FAIL ($CASE): $*"; echo "--- stderr:"; head -c 2000 err.txt 2>/dev/null; exit 1; }
# run EXPECTED_EXIT MAX_MIB command...: exit code and peak RSS checked; stdout in out.txt, stderr in err.txt
run() {
  local want=$1 max_mib=$2; shift 2
  /usr/bin/time -f %M -o rss.txt "$Q" "$@" >out.txt 2>err.txt
  local rc=$?
  local kib
  kib=$(tail -n 1 rss.txt)
  echo "peak RSS $((kib / 1024)) MiB (limit $max_mib MiB), exit $rc: qroar $*"
  ! grep -qE "terminate called|Segmentation|Aborted|Sanitizer|bad_alloc|out of memory" err.txt || fail "crash or untyped error"
  [ "$rc" = "$want" ] || fail "exit $rc, expected $want"
  # QROAR_MEMORY_NO_RSS_LIMIT=1 (the sanitizer build: shadow memory and the allocator's quarantine are not the
  # product's memory) keeps the exit-code and error checks and drops the RSS limit
  if [ "${QROAR_MEMORY_NO_RSS_LIMIT:-0}" = 1 ]; then
    echo "(RSS limit not checked: sanitizer build)"
  else
    [ "$kib" -lt $((max_mib * 1024)) ] || fail "peak RSS $((kib / 1024)) MiB, limit $max_mib MiB"
  fi
}
stderr_has() { grep -qE -- "$1" err.txt || fail "stderr lacks '$1'"; }
# le64 N: N as 8 little-endian bytes (printf escapes)
le64() { local h; h=$(printf '%016x' "$1"); printf "\\x${h:14:2}\\x${h:12:2}\\x${h:10:2}\\x${h:8:2}\\x${h:6:2}\\x${h:4:2}\\x${h:2:2}\\x${h:0:2}"; }
le32() { local h; h=$(printf '%08x' "$1"); printf "\\x${h:6:2}\\x${h:4:2}\\x${h:2:2}\\x${h:0:2}"; }
# a 50 MB text without a single newline
one_line_text() { yes "once upon a time there was a little dog who liked to run in the park," | head -c 50000000 | tr '\n' ' ' > "$1"; }

# a text of about $1 MB in lines of TinyStories (each line a story), repeated
lined_text() {
  local t=$S/data/text/tinystories/tinystories_validation_head.txt
  while cat "$t"; do :; done 2>/dev/null | head -c "$1" > "$2"
}
# A llama2.c checkpoint with every weight zero (dim 8, one layer, 512-token vocabulary, trained context 64): each
# token costs microseconds, so a text of tens of MB is evaluated whole within the test's time; every NLL is ln 512.
zero_model() {
  { le32 8; le32 8; le32 1; le32 1; le32 1; le32 512; le32 64; } > "$1"
  truncate -s $((28 + 4 * 5080)) "$1"
}

case $CASE in
  gguf_nested_empty_arrays)  # 120 MB, one key: an array of 10 million empty arrays (12 zero bytes each, a hole)
    key=hostile.nested n=10000000
    { printf GGUF; le32 3; le64 0; le64 1; le64 ${#key}; printf %s "$key"; le32 9; le32 9; le64 $n; } > nested.gguf
    truncate -s $(( $(stat -c %s nested.gguf) + 12 * n )) nested.gguf
    run 1 100 eval --model nested.gguf --tokens "$W/s260_hidden_512.txt" --ctx 256 -q
    stderr_has "^qroar: error: \[qroar\.format_error\.300\] nested\.gguf: at byte offset 54: metadata key 'hostile\.nested': the parsed header would take more than 268435456 bytes" ;;
  gguf_many_nested_arrays)  # 40 keys of 2^18 empty arrays each (3 MB of holes per key): the total counts
    n=262144
    { printf GGUF; le32 3; le64 0; le64 40; } > many.gguf
    for i in $(seq 10 49); do
      key=hostile.key$i
      { le64 ${#key}; printf %s "$key"; le32 9; le32 9; le64 $n; } >> many.gguf
      truncate -s $(( $(stat -c %s many.gguf) + 12 * n )) many.gguf
    done
    run 1 400 eval --model many.gguf --tokens "$W/s260_hidden_512.txt" --ctx 256 -q
    stderr_has "^qroar: error: \[qroar\.format_error\.300\] many\.gguf: at byte offset [0-9]+: metadata key 'hostile\.key[0-9]+': the parsed header would take more than" ;;
  safetensors_huge_header)  # a 99 MB header: one tensor whose shape lists 49.5 million zeros
    mkdir folder
    printf '%s' '{"model_type": "llama", "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 16}' > folder/config.json
    head='{"a":{"dtype":"F32","data_offsets":[0,0],"shape":[' tail='0]}}'
    len=99000000
    { le64 $len; printf %s "$head"; yes 0, | tr -d '\n' | head -c $((len - ${#head} - ${#tail})); printf %s "$tail"; } > folder/model.safetensors
    run 1 400 eval --model folder --tokens "$W/s260_hidden_512.txt" --ctx 256 -q
    stderr_has "^qroar: error: \[qroar\.format_error\.300\] .*folder/model\.safetensors: tensor 'a': at byte offset 8: parsing the 99000000-byte safetensors header would take more than" ;;
  eval_one_line_text)  # --max-windows 1: only the text one window needs is tokenized
    one_line_text big.txt
    run 0 400 eval --model "$M" --text big.txt --ctx 256 --max-windows 1 -q ;;
  search_one_line_dev)  # --dev and --validation: only the text their windows need
    one_line_text big.txt
    run 0 400 search --model "$M" --dev big.txt --validation big.txt --dev-windows 1 --validation-windows 1 \
      --quant kv:k4v4:token:g8 --rope linear --factor 2 --ctx 512 --variant query_only --grid-points 3 -q ;;
  gptq_one_line_calib)  # --calib: only the text its windows need
    one_line_text big.txt
    run 0 400 eval --model "$M" --tokens "$W/s260_hidden_512.txt" --ctx 256 --max-windows 1 --quant gptq:w4:g32 \
      --calib big.txt --calib-ctx 64 --calib-windows 2 -q ;;
  eval_whole_text_streamed)  # no --max-windows: a 12 MB text is pulled piece by piece (cut at line ends), never
    # tokenized whole (that costs ~25 bytes per text byte: ~300 MB)
    lined_text 12000000 big.txt
    zero_model zero.bin
    run 0 100 eval --model zero.bin --tokenizer "$S/data/models/stories260K/tok512.bin" --text big.txt --ctx 64 --json -q
    grep -qE '"windows":[0-9]{5,}' out.txt || fail "not every window evaluated: $(head -c 300 out.txt)" ;;
  eval_whole_tokens_streamed)  # no --max-windows: a 100 MB token-id file (one id per 101 bytes) is read in 1 MiB
    # blocks, never mapped or read whole
    yes "7$(printf '%100s' '')" | head -c 100000000 > ids.txt
    zero_model zero.bin
    run 0 60 eval --model zero.bin --tokens ids.txt --ctx 64 --json -q
    # 10^8 bytes in 102-byte lines: 980393 ids (the last line cut), 15318 windows of 64, 63 tokens scored in each
    grep -q '"tokens_scored":965034,' out.txt || fail "not every window evaluated: $(head -c 300 out.txt)" ;;
  ctx_beyond_limit)  # refused before the text is read or anything is allocated for the window
    one_line_text big.txt
    run 2 400 eval --model "$M" --text big.txt --ctx 16777216 -q
    stderr_has "^qroar: \[qroar\.invalid_argument\.100\] --ctx 16777216 exceeds the limit of 1048576 tokens" ;;
  *) fail "unknown case" ;;
esac
rm -f big.txt ids.txt nested.gguf many.gguf folder/model.safetensors  # hundreds of MB each; kept when a case fails
echo "PASS ($CASE)"
