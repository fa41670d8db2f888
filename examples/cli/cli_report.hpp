// --report DIR: the plots of eval, diagnose, search and demo (SVG + CSV beside them, plus report.json).
#pragma once

#include "svg_plot.hpp"

#include <nlohmann/json.hpp>

#include <qroar/diag/diagnostics.hpp>
#include <qroar/model/perplexity.hpp>
#include <qroar/search/band_scales.hpp>

#include <string>
#include <utility>
#include <vector>

namespace qroar_cli {

// Perplexity against position (bucket centre), one series per named result.
inline line_plot perplexity_plot(const std::vector<std::pair<std::string, qroar::perplexity_result>>& runs,
                                 const std::string& title) {
  line_plot p;
  p.title = title;
  p.x_label = "position in the window (bucket centre, tokens)";
  p.y_label = "perplexity (exp of bucket mean NLL)";
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

// A (layer, band) matrix of band_diagnostics as a heatmap.
inline heatmap band_heatmap(const qroar::band_diagnostics& d, const std::vector<double>& v,
                            const qroar::band_partition& bands, const std::string& title, const std::string& what) {
  heatmap h;
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
  p.y_label = "RMS logit error vs full precision";
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

// The chosen scales: W_Q factor per (unit, band) (the W_K factor is the reciprocal for the symmetric variant).
inline heatmap scales_heatmap(const qroar::band_scales& s, bool key) {
  heatmap h;
  h.title = key ? "Q-ROAR scales: W_K factor per band" : "Q-ROAR scales: W_Q factor per band";
  h.x_label = "RoPE band (pairs)";
  h.y_label = "unit";
  h.value_label = key ? "W_K row factor" : "W_Q row factor";
  h.columns = band_labels(s.bands);
  for (int u = 0; u < s.units(); ++u)
    h.rows.push_back(s.granularity == qroar::scale_granularity::global ? std::string("all layers") : fmt::format("unit {}", u));
  h.values = key ? s.key : s.query;
  return h;
}

inline void write_report_json(const std::string& dir, const nlohmann::ordered_json& j) {
  write_text_file(dir, "report.json", json_text(j, 2) + "\n");
}

}  // namespace qroar_cli
