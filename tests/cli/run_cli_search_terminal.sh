#!/bin/bash
# `qroar search` in a terminal (script(1) gives it a pseudo-terminal, stdout and stderr both on it): the equivariance
# line is printed once, and the progress bar ends at the candidate count the summary states (N/N, "N candidates").
# Usage: run_cli_search_terminal.sh QROAR ARGS...   Exit 0 pass, 1 fail, 77 skipped (no script(1)).
set -u
command -v script >/dev/null || { echo "skipped: script(1) is not installed"; exit 77; }
cmd=$(printf '%q ' "$@")
out=$(script -qec "$cmd" /dev/null) || { echo "FAIL: the search failed:"; echo "$out"; exit 1; }
lines=$(printf '%s' "$out" | tr '\r' '\n' | grep -c '^equivariance:')
[ "$lines" = 1 ] || { echo "FAIL: $lines equivariance lines, expected 1:"; echo "$out"; exit 1; }
last=$(printf '%s' "$out" | tr '\r' '\n' | grep -o '\] [0-9]*/[0-9]*' | tail -1 | sed 's/\] //')
summary=$(printf '%s' "$out" | grep -o '^[0-9]* candidates' | cut -d' ' -f1)
[ -n "$summary" ] && [ "$last" = "$summary/$summary" ] || { echo "FAIL: bar ends at '$last', summary says '$summary' candidates:"; echo "$out"; exit 1; }
echo "ok: one equivariance line, bar $last, $summary candidates"
