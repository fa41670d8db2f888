// --report DIR: the plots of eval, diagnose, search and demo (SVG + CSV beside them, plus report.json).
#pragma once

#include "cli_common.hpp"
#include "svg_plot.hpp"

#include <nlohmann/json.hpp>

#include <qroar/diag/diagnostics.hpp>
#include <qroar/model/perplexity.hpp>
#include <qroar/search/band_scales.hpp>
#include <qroar/search/search.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qroar_cli {

// Perplexity against position (bucket centre), one series per named result, over [0, ctx], with a vertical marker
// at the trained context L0 (positions past it are the extension). ctx or l0 <= 0: not drawn / range from the data.
inline line_plot perplexity_plot(const std::vector<std::pair<std::string, qroar::perplexity_result>>& runs,
                                 const std::string& title, int ctx = 0, int l0 = 0) {
  line_plot p;
  p.title = title;
  p.x_label = "position in the window (tokens; bucket centre)";
  p.y_label = "perplexity (exp of the bucket's mean NLL)";
  if (ctx > 0) p.x_min = 0.0, p.x_max = ctx;
  if (l0 > 0) p.vertical.push_back({static_cast<double>(l0), fmt::format("L0 = {} (trained context)", l0), "#444"});
  for (const auto& [name, r] : runs) {
    plot_series s;
    s.name = name;
    for (const auto& b : r.per_position) {
      s.x.push_back(0.5 * (b.start + b.end));
      s.y.push_back(std::exp(b.mean_nll));
    }
    p.series.push_back(std::move(s));
  }
  return p;
}

inline std::vector<std::string> band_labels(const qroar::band_partition& bands) {
  std::vector<std::string> out;
  for (std::size_t k = 0; k < bands.size(); ++k)
    out.push_back(fmt::format("band {} [{}-{}]", k, bands[k].first_pair, bands[k].last_pair));
  return out;
}

// A (layer, band) matrix of band_diagnostics as a heatmap; `range`: the colour range it shares with the maps shown
// beside it (colour_range_of over all of them), empty: its own.
inline heatmap band_heatmap(const qroar::band_diagnostics& d, const std::vector<double>& v,
                            const qroar::band_partition& bands, const std::string& title, const std::string& what,
                            std::optional<colour_range> range = std::nullopt) {
  heatmap h;
  h.range = range;
  h.title = title;
  h.x_label = "RoPE band (pairs, high frequency first)";
  h.y_label = "layer";
  h.value_label = what;
  h.columns = band_labels(bands);
  for (int l = 0; l < d.n_layers; ++l) h.rows.push_back(fmt::format("layer {}", l));
  h.values = v;
  return h;
}

// Layer-averaged logit RMS error against distance, one series per named profile.
inline line_plot logit_error_plot(const std::vector<std::pair<std::string, qroar::error_profile>>& runs,
                                  const std::string& title, bool per_layer = false) {
  line_plot p;
  p.title = title;
  p.x_label = "relative distance m - n (tokens, bucket start, log scale; distance 0 omitted)";
  p.y_label = "RMS logit error vs full precision (logit units)";
  p.log_x = true;
  for (const auto& [name, e] : runs) {
    const std::size_t nb = e.bucket_start.size();
    if (per_layer) {
      for (int l = 0; l < e.n_layers; ++l) {
        plot_series s;
        s.name = fmt::format("{}layer {}", name.empty() ? "" : name + ", ", l);
        for (std::size_t k = 0; k < nb; ++k) {
          if (e.bucket_start[k] <= 0) continue;  // distance 0 has no place on a log axis
          s.x.push_back(std::max(1, e.bucket_start[k]));
          s.y.push_back(e.logit_rms[static_cast<std::size_t>(l) * nb + k]);
        }
        p.series.push_back(std::move(s));
      }
      continue;
    }
    plot_series s;
    s.name = name;
    for (std::size_t k = 0; k < nb; ++k) {
      if (e.bucket_start[k] <= 0) continue;  // distance 0 has no place on a log axis
      double sum = 0;
      int n = 0;
      for (int l = 0; l < e.n_layers; ++l) {
        const double v = e.logit_rms[static_cast<std::size_t>(l) * nb + k];
        if (std::isfinite(v)) sum += v, ++n;
      }
      s.x.push_back(std::max(1, e.bucket_start[k]));
      s.y.push_back(n > 0 ? sum / n : std::numeric_limits<double>::quiet_NaN());
    }
    p.series.push_back(std::move(s));
  }
  return p;
}

// The chosen scales: W_Q or W_K factor per (unit, band), both maps on one colour range (the factors of both).
inline heatmap scales_heatmap(const qroar::band_scales& s, bool key) {
  heatmap h;
  h.title = key ? "Which bands did Q-ROAR rescale? W_K row factor per band" : "Which bands did Q-ROAR rescale? W_Q row factor per band";
  h.x_label = "RoPE band (pairs, high frequency first)";
  h.y_label = "unit";
  h.value_label = key ? "W_K factor (1: unchanged)" : "W_Q factor (1: unchanged)";
  h.columns = band_labels(s.bands);
  for (int u = 0; u < s.units(); ++u)
    h.rows.push_back(s.granularity == qroar::scale_granularity::global ? std::string("all layers") : fmt::format("unit {}", u));
  h.values = key ? s.key : s.query;
  h.range = colour_range_of({&s.query, &s.key});
  return h;
}

// The reason of a search step without its window / document number ("rejected: validation NLL rose on window 3"
// -> "rejected: validation NLL rose on a window"): one legend entry per kind of rejection.
inline std::string rejection_kind(const std::string& note) {
  for (const char* what : {" on window ", " on document "}) {
    const auto at = note.rfind(what);
    if (at != std::string::npos && at + std::strlen(what) < note.size() &&
        note.find_first_not_of("0123456789", at + std::strlen(what)) == std::string::npos)
      return note.substr(0, at) + (std::strcmp(what, " on window ") == 0 ? " on a window" : " on a document");
  }
  return note;
}

// The search trace: every evaluated candidate as a discrete marker (x: its evaluation number, 1-based, in search
// order; y: its dev objective), never joined to the next (they are factors of different bands); accepted
// candidates, candidates that beat the current objective but were rejected (one series per kind of reason, named
// in the legend), and the others; the baseline (no scales) and the final objective as horizontal lines; the
// candidates of each band's factor on one shaded span.
inline line_plot search_trace_plot(const qroar::search_result& r, const std::string& objective) {
  line_plot p;
  p.title = "Search trace: which candidates beat the baseline, which were kept, why others were rejected";
  p.x_label = std::string("candidate (evaluation number in search order; shaded: bN band N, s/t balance/temperature") +
              (r.scales.units() > 1 ? ", uN unit N)" : ")");
  p.y_label = objective == "layer_local" ? "dev objective (layer-local relative error)" : "dev objective (mean NLL, nats/token)";
  p.integer_x = true;
  p.x_min = 0.5;
  p.x_max = static_cast<double>(r.steps.size()) + 0.5;
  p.horizontal.push_back({r.baseline_objective, fmt::format("baseline, no scales: {:.5g}", r.baseline_objective), "#444"});
  if (r.final_objective != r.baseline_objective)
    p.horizontal.push_back({r.final_objective, fmt::format("final: {:.5g}", r.final_objective), "#2ca02c"});
  plot_series other{"evaluated, not kept", {}, {}, false, "circle", "#9a9a9a", "candidate other", {}};
  plot_series accepted{"accepted", {}, {}, false, "diamond", "#2ca02c", "candidate accepted", {}};
  // one shaded span per (pass, unit, band, coordinate): the candidates of one band's factor
  for (std::size_t k = 0; k < r.steps.size(); ++k) {
    const auto& s = r.steps[k];
    const bool same = !p.spans.empty() && k > 0 && r.steps[k - 1].pass == s.pass && r.steps[k - 1].unit == s.unit &&
                      r.steps[k - 1].band == s.band && r.steps[k - 1].which == s.which;
    if (same) {
      p.spans.back().to = static_cast<double>(k) + 1.5;
      continue;
    }
    std::string label = fmt::format("b{}", s.band);
    if (s.which != 'q') label += s.which == 's' ? " s" : " t";
    if (r.scales.units() > 1) label = fmt::format("u{} ", s.unit) + label;
    p.spans.push_back({static_cast<double>(k) + 0.5, static_cast<double>(k) + 1.5, label});
  }
  std::vector<plot_series> rejected;
  static const char* rejected_colours[] = {"#d62728", "#ff7f0e", "#9467bd", "#8c564b"};
  for (std::size_t k = 0; k < r.steps.size(); ++k) {
    const auto& s = r.steps[k];
    const std::string what = s.which == 'q' ? "factor" : s.which == 's' ? "balance" : "temperature";
    const std::string tip = fmt::format("candidate {}: pass {}, unit {}, band {}, {} {:.4g}, objective {:.6g}{}", k + 1, s.pass, s.unit,
                                        s.band, what, s.factor, s.objective, s.note.empty() ? "" : ": " + s.note);
    plot_series* to = &other;
    if (s.accepted) {
      to = &accepted;
    } else if (s.note.rfind("rejected", 0) == 0) {
      const std::string kind = rejection_kind(s.note);
      auto it = std::find_if(rejected.begin(), rejected.end(), [&](const plot_series& q) { return q.css_class == kind; });
      if (it == rejected.end()) {
        rejected.push_back({kind, {}, {}, false, "cross", rejected_colours[rejected.size() % 4], kind, {}});
        it = rejected.end() - 1;
      }
      to = &*it;
    }
    to->x.push_back(static_cast<double>(k + 1));
    to->y.push_back(s.objective);
    to->point_titles.push_back(tip);
  }
  // legend names with counts; the rejected series' class becomes "candidate rejected"
  auto named = [](plot_series s) {
    s.name = fmt::format("{} ({})", s.name, s.x.size());
    return s;
  };
  p.series.push_back(named(other));
  p.series.push_back(named(accepted));
  for (auto& s : rejected) {
    s.css_class = "candidate rejected";
    p.series.push_back(named(s));
  }
  return p;
}

inline void write_report_json(const std::string& dir, const nlohmann::ordered_json& j) {
  write_text_file(dir, "report.json", json_text(j, 2) + "\n");
}

}  // namespace qroar_cli
