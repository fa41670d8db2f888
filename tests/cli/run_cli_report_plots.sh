#!/usr/bin/env bash
# The --report plots of real runs (stories260K, YaRN x4, ctx 2048 = 4 L0): the structure each SVG must have.
#   search_trace.svg: one marker per candidate in report.json's steps, no line through them, every kind of
#     rejection in report.json named in the legend, the baseline as a horizontal line; the scales maps on one range;
#   diagnose: each full-precision / quantized pair on one colour range; a log colour bar labelled in decades;
#   eval: the L0 marker at the x coordinate of L0 (the plot frame's left + L0 / ctx * width).
# Usage: run_cli_report_plots.sh QROAR MODEL WINDOWS_DIR WORK_DIR
set -u
Q=$1 M=$2 W=$3 D=$4
rm -rf "$D" && mkdir -p "$D" && cd "$D" || exit 1
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
common=(--model "$M" --quant kv:k4v4:token:g8 --rope yarn --factor 4 --ctx 2048 -q)

# search: one dev window, validation held out of the same document (the setting that rejects candidates here)
"$Q" search "${common[@]}" --dev "$W/s260_eval_12288.txt" --dev-windows 1 --validation-windows 2 --report search >/dev/null ||
  fail "search exited with $?"
svg=search/search_trace.svg json=search/report.json
steps=$(grep -c '^      "note": ' "$json")
markers=$(grep -o 'class="candidate' "$svg" | wc -l)
[ "$steps" -gt 0 ] && [ "$markers" -eq "$steps" ] || fail "search_trace: $markers markers for $steps candidates"
! grep -q '<polyline' "$svg" || fail "search_trace: a line joins the candidates"
grep -q 'class="hline-label"[^>]*>baseline, no scales: ' "$svg" || fail "search_trace: no baseline line"
rejected=$(grep -o '^      "note": "rejected[^"]*"' "$json" | sed 's/.*"note": "//; s/"$//; s/ on window [0-9]*$/ on a window/; s/ on document [0-9]*$/ on a document/' | sort -u)
[ -n "$rejected" ] || fail "search: no candidate rejected (this setting rejects some; the check below needs one)"
while IFS= read -r kind; do
  [ -z "$kind" ] && continue
  n=$(grep -c "class=\"candidate rejected\"[^>]*><title>[^<]*: ${kind% on a *}" "$svg")
  grep -q "class=\"legend\"[^>]*>$kind ([0-9]*)</text>" "$svg" || fail "search_trace: rejection '$kind' not in the legend"
  [ "$n" -gt 0 ] || fail "search_trace: no marker with the reason '$kind'"
done <<<"$rejected"

bar() { grep -o '<g class="colour-bar"[^>]*>' "$1"; }
a=$(bar search/scales_query.svg) b=$(bar search/scales_key.svg)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "scales: colour ranges differ: '$a' vs '$b'"

# diagnose: paired heatmaps on one colour range
"$Q" diagnose "${common[@]}" --tokens "$W/s260_eval_12288.txt" --max-windows 1 --report diag >/dev/null || fail "diagnose exited with $?"
for m in interpolation_pressure tail_inflation_ratio; do
  a=$(bar "diag/${m}_fp.svg") b=$(bar "diag/${m}_quantized.svg")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "$m: colour ranges differ: '$a' vs '$b'"
done
# Interpolation Pressure spans decades here (about 5 .. 4000): a log colour bar, every label a power of ten
bar diag/interpolation_pressure_fp.svg | grep -q 'data-scale="log"' || fail "interpolation_pressure: not a log colour scale"
labels=$(grep -o 'class="colour-tick"[^>]*>[^<]*<' diag/interpolation_pressure_fp.svg | sed 's/.*>//; s/<$//')
[ "$(echo "$labels" | wc -l)" -ge 3 ] || fail "interpolation_pressure: fewer than 3 decade labels: $labels"
for v in $labels; do
  awk -v v="$v" 'BEGIN { l = log(v) / log(10); n = int(l + (l < 0 ? -0.5 : 0.5)); exit !(v > 0 && (l - n) * (l - n) < 1e-18) }' ||
    fail "interpolation_pressure: colour bar label $v is not a power of ten"
done

# eval: the L0 marker at L0 = 512 of ctx 2048
"$Q" eval "${common[@]}" --tokens "$W/s260_eval_12288.txt" --max-windows 1 --report eval >/dev/null || fail "eval exited with $?"
svg=eval/perplexity_vs_position.svg
frame=$(grep -o '<rect x="[0-9.]*" y="[0-9.]*" width="[0-9.]*" height="[0-9.]*" fill="none" stroke="black"/>' "$svg" | head -1)
left=$(echo "$frame" | sed 's/.*<rect x="\([0-9.]*\)".*/\1/') width=$(echo "$frame" | sed 's/.*width="\([0-9.]*\)".*/\1/')
x=$(grep -o '<line class="vline" x1="[0-9.]*"' "$svg" | sed 's/.*x1="//; s/"//')
[ -n "$x" ] && awk -v x="$x" -v l="$left" -v w="$width" 'BEGIN { e = l + 512 / 2048 * w; exit !(x - e < 0.051 && e - x < 0.051) }' ||
  fail "perplexity_vs_position: L0 marker at x='$x', expected $left + 512/2048 * $width"
grep -q 'class="vline-label"[^>]*>L0 = 512 (trained context)<' "$svg" || fail "perplexity_vs_position: no L0 label"

[ "$fails" -eq 0 ] && echo "report plots: all checks passed"
exit $((fails > 0))
