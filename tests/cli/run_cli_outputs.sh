#!/bin/bash
# Outputs never destroy data (issue 21), through the command line: run_cli_outputs.sh QROAR SHARED WORK CASE SCALES
# (SCALES: a band-scales JSON for stories260K).
# Each case runs in a fresh WORK folder and exits 0 (pass), 1 (fail) or 77 (skipped: needs root for mknod).
set -u
Q=$1 S=$2 WORK=$3 CASE=$4 SCALES=$5
M=$S/data/models/stories260K/stories260K.bin
W=$S/reference/windows
HF=$S/data/models/gutenberg-3m/hf
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
SEARCH=(search --model "$M" --quant kv:k4v4:token:g8 --rope linear --factor 2 --ctx 1024 --dev-windows 1
        --variant query_only --grid-points 3 -q)
EVAL=(eval --model "$M" --tokens "$W/s260_hidden_512.txt" --ctx 256 --max-windows 1 -q)

fail() { echo "FAIL ($CASE): $*"; echo "--- stdout:"; cat out.txt 2>/dev/null; echo "--- stderr:"; cat err.txt 2>/dev/null; exit 1; }
# run EXPECTED_EXIT command...: the exit code must match; stdout in out.txt, stderr in err.txt
run() {
  local want=$1; shift
  "$Q" "$@" >out.txt 2>err.txt
  local rc=$?
  [ "$rc" = "$want" ] || fail "exit $rc, expected $want: $*"
  ! grep -qE "terminate called|Segmentation|Aborted|Sanitizer|json.exception" err.txt || fail "crash or foreign exception"
}
stderr_has() { grep -qE -- "$1" err.txt || fail "stderr lacks '$1'"; }
no_temporaries() { [ -z "$(find "${1:-.}" -name '.qroar-tmp-*' -print -quit)" ] || fail "temporaries left: $(find . -name '.qroar-tmp-*')"; }
same() { cmp -s "$1" "$2" || fail "$1 changed"; }

case $CASE in
  fifo_output)  # a FIFO is refused, not replaced by a rename
    mkfifo s.json
    run 2 "${SEARCH[@]}" --dev "$W/s260_dev_2048.txt" -o s.json
    stderr_has "s.json: the output path is not a regular file"
    [ -p s.json ] || fail "the FIFO was replaced" ;;
  device_output)  # a device node of our own (never /dev/null itself)
    [ "$(id -u)" = 0 ] || { echo "skipped: mknod needs root"; exit 77; }
    mknod null c 1 3 || { echo "skipped: mknod refused"; exit 77; }
    run 2 "${SEARCH[@]}" --dev "$W/s260_dev_2048.txt" -o null
    stderr_has "null: the output path is not a regular file"
    [ -c null ] || fail "the device node was replaced" ;;
  output_is_dev_input)  # the --dev text under another name (a hard link): refused by device and inode
    cp "$W/s260_dev_2048.txt" dev.txt && cp dev.txt dev.orig && ln dev.txt alias.txt
    run 2 "${SEARCH[@]}" --dev dev.txt -o alias.txt
    stderr_has "refusing to overwrite the input file dev.txt"
    same dev.txt dev.orig ;;
  apply_over_scales)  # apply -o the --scales file
    cp "$SCALES" s.json && cp s.json s.orig
    run 2 apply --model "$M" --scales s.json -o s.json --format llama2c -q
    stderr_has "refusing to overwrite the input file s.json"
    same s.json s.orig ;;
  quantize_over_tokenizer)  # quantize -o the --tokenizer file
    cp "$S/data/models/stories260K/tok512.bin" tok.bin && cp tok.bin tok.orig
    run 2 quantize --model "$M" --tokenizer tok.bin --quant rtn:w4:g32 -o tok.bin --format llama2c -q
    stderr_has "refusing to overwrite the input file tok.bin"
    same tok.bin tok.orig ;;
  missing_output_folder)  # checked before a search that would take minutes (the test has a timeout)
    run 1 search --model "$M" --quant kv:k4v4:token:g8 --rope linear --factor 2 --ctx 1024 --dev "$W/s260_dev_2048.txt" \
      --dev-windows 2 --variant independent --granularity per_layer_kv_head --grid-points 1000 --passes 100 -q \
      -o missing/dir/s.json
    stderr_has "missing/dir/s.json: the output folder missing/dir cannot be used"
    [ ! -s out.txt ] || fail "stdout not empty" ;;
  report_is_a_file)  # --report FILE: a usage error before the work, not a filesystem error after it
    echo "not a folder" > notes.txt
    run 2 "${EVAL[@]}" --report notes.txt
    stderr_has "notes.txt: --report needs a folder"
    [ "$(cat notes.txt)" = "not a folder" ] || fail "notes.txt changed" ;;
  report_symlink)  # a link planted in the report folder is replaced, its target untouched
    mkdir rep && echo precious > victim.txt && ln -s ../victim.txt rep/report.json && ln -s ../victim.txt rep/perplexity_vs_position.svg
    run 0 "${EVAL[@]}" --report rep
    [ "$(cat victim.txt)" = precious ] || fail "the link was followed"
    [ -f rep/report.json ] && [ ! -L rep/report.json ] && [ ! -L rep/perplexity_vs_position.svg ] || fail "links left in place"
    grep -q '"mean_nll"' rep/report.json || fail "report.json not written"
    no_temporaries ;;
  report_over_input)  # the --tokens file lives in the report folder under a report file's name
    mkdir rep && cp "$W/s260_hidden_512.txt" rep/report.json && cp rep/report.json tokens.orig
    run 2 eval --model "$M" --tokens rep/report.json --ctx 256 --max-windows 1 -q --report rep
    stderr_has "refusing to overwrite the input file rep/report.json"
    same rep/report.json tokens.orig
    no_temporaries ;;
  report_write_fails)  # a write error (file size limit 1 KiB, as a full disk would) is exit 1, never exit 0 with empty files
    mkdir rep
    ( ulimit -f 1; trap '' XFSZ; exec "$Q" "${EVAL[@]}" --report rep >out.txt 2>err.txt ); rc=$?
    [ "$rc" = 1 ] || fail "exit $rc, expected 1"
    stderr_has "write failed: File too large"
    [ -z "$(ls -A rep)" ] || fail "partial report files left: $(ls -A rep)"
    no_temporaries ;;
  search_write_fails_prints_result)  # the final write fails: the scales go to stdout, not lost
    ( ulimit -f 1; trap '' XFSZ; exec "$Q" "${SEARCH[@]}" --dev "$W/s260_dev_2048.txt" -o s.json >out.txt 2>err.txt ); rc=$?
    [ "$rc" = 1 ] || fail "exit $rc, expected 1"
    stderr_has "the scales are printed on stdout instead"
    grep -q '"format": "qroar-band-scales"' out.txt || fail "no scales on stdout"
    [ ! -e s.json ] || fail "s.json written"
    no_temporaries ;;
  hf_tokenizer_symlink)  # the tokenizer copy into an existing folder replaces a planted link, never follows it
    mkdir out && echo precious > victim.model && ln -s ../victim.model out/tokenizer.model
    run 0 quantize --model "$HF" --quant rtn:w4:g32 -o out -q
    [ "$(cat victim.model)" = precious ] || fail "the link was followed"
    [ ! -L out/tokenizer.model ] || fail "link left in place"
    same out/tokenizer.model "$HF/tokenizer.model"
    no_temporaries "$WORK" ;;
  json_invalid_utf8_path)  # a non-UTF-8 output path in --json: U+FFFD, exit 0
    run 0 apply --model "$M" --scales "$SCALES" -o "$(printf 'out\xff.bin')" --json -q
    grep -q "$(printf 'out\xef\xbf\xbd.bin')" out.txt || fail "no U+FFFD in the JSON" ;;
  json_invalid_utf8_prompt)  # generate --json with a prompt that is not UTF-8
    run 0 generate --model "$M" --prompt "$(printf 'Once \xff upon')" --steps 4 --json
    grep -q "$(printf 'Once \xef\xbf\xbd upon')" out.txt || fail "no U+FFFD in the JSON" ;;
  unreadable_model)  # permission denied is reported as such, typed, not as "no such file" or a filesystem_error
    [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null || { echo "skipped: needs root and setpriv"; exit 77; }
    mkdir locked && cp "$M" locked/model.bin && chmod 000 locked
    as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$Q" "$@" >out.txt 2>err.txt; }
    as_nobody eval --model "$WORK/locked/model.bin" --tokens "$W/s260_hidden_512.txt" --ctx 256; rc=$?
    [ "$rc" = 1 ] || fail "exit $rc, expected 1"
    stderr_has "io_error.200\\] .*locked/model.bin: cannot open: Permission denied"
    as_nobody eval --model "$WORK/locked" --tokens "$W/s260_hidden_512.txt" --ctx 256; rc=$?
    [ "$rc" = 1 ] || fail "exit $rc, expected 1"
    stderr_has "io_error.200\\] .*locked: cannot read the folder: Permission denied"
    chmod 755 locked ;;
  *) echo "unknown case $CASE"; exit 1 ;;
esac
echo "ok ($CASE)"
