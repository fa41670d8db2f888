#!/bin/bash
# Every ```sh / ```bash block of a markdown file must run as written (issue 23), in order, from a fresh clone:
#   run_doc_blocks.sh SOURCE_DIR BUILD_DIR SHARED_DIR WORK FILE.md
# WORK is made afresh: WORK/qroar holds the tracked files of SOURCE_DIR (git ls-files, as a clone has them) with
# build -> BUILD_DIR, and WORK/shared -> SHARED_DIR (the `../shared` beside the checkout). The blocks of FILE run
# one after another in one bash (variables and the working directory carry over, as for a reader typing them),
# started in WORK/qroar with BUILD_DIR (the built qroar) first on PATH, under `set -e -o pipefail`: any failing
# command fails the test, naming the block. A block right after a line `<!-- docs-test: skip REASON -->` is not
# run; the skipped blocks are listed with their reasons. Exit 0 (pass), 1 (fail) or 77 (no block to run).
set -u
SRC=$1 BUILD=$2 SHARED=$3 WORK=$4 FILE=$5
[ -d "$SHARED" ] || { echo "skipped: $SHARED (the shared models and texts) is absent"; exit 77; }
rm -rf "$WORK" && mkdir -p "$WORK/qroar" || exit 1
git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1 || { echo "skipped: $SRC is not a git checkout (the tracked files are what a clone has)"; exit 77; }
(cd "$SRC" && git ls-files -z | xargs -0 cp --parents -t "$WORK/qroar") || { echo "FAIL: cannot copy the tracked files"; exit 1; }
ln -s "$BUILD" "$WORK/qroar/build" && ln -s "$SHARED" "$WORK/shared" || exit 1

# The blocks: a driver script with one section per block; the skipped ones are listed instead.
awk -v file="$FILE" -v q="'" '
  function flush_skip() { skip = "" }
  /^[ \t]*<!-- docs-test: skip/ { s = $0; sub(/^[ \t]*<!-- docs-test: skip[ \t]*/, "", s); sub(/[ \t]*-->[ \t]*$/, "", s); skip = s; next }
  !inblock && /^[ \t]*```(sh|bash)[ \t]*$/ {
    inblock = 1; line = FNR
    if (skip != "") { r = skip; gsub(q, q "\\" q q, r); print "echo " q "skipped: " file ":" line ": " r q; skipping = 1 }
    else { print "__block " q file ":" line q; skipping = 0; ++ran }
    skip = ""; next
  }
  inblock && /^[ \t]*```[ \t]*$/ { inblock = 0; next }
  inblock { if (!skipping) { l = $0; sub(/^  /, "", l); print l }; next }
  /[^ \t]/ { skip = "" }
  END { if (ran == 0) print "__none" }
' "$SRC/$FILE" > "$WORK/blocks.sh"
if grep -q '^__none$' "$WORK/blocks.sh"; then grep '^echo' "$WORK/blocks.sh" | sh; echo "no block to run in $FILE"; exit 77; fi

cd "$WORK/qroar" || exit 1
PATH="$BUILD:$PATH" bash -c '
  set -e -o pipefail
  __block() { __current=$1; echo "=== block $1"; }
  __none() { :; }
  trap '"'"'echo "FAIL: the block at ${__current:-?} exited with status $? (command: $BASH_COMMAND)"'"'"' ERR
  . "$0"
' "$WORK/blocks.sh"
rc=$?
[ $rc = 0 ] && echo "PASS: every block of $FILE ran" || echo "FAIL ($FILE)"
exit $([ $rc = 0 ] && echo 0 || echo 1)
