// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "../diag/diagnostics.hpp"
#include "../model/perplexity.hpp"
#include "../quant/equivariance.hpp"
#include "../quant/gptq.hpp"
#include "../quant/kv_cache.hpp"
#include "../quant/weights.hpp"
#include "band_scales.hpp"

namespace qroar {
inline namespace v0 {

// The Q-ROAR band-scale search (docs/method.md). Coordinate descent over (unit, band) on a log-spaced grid of
// factors, on the quantized model under the deployed RoPE interpolation:
//   for pass = 1..passes, for each unit (the model, a layer, or a layer and KV head), for each band in order
//   (descending Interpolation Pressure, or natural): evaluate every grid factor for that band with the others
//   fixed; take the best if it lowers the dev objective by more than `min_improvement` (relative) AND passes the
//   acceptance checks on text the search did not fit:
//     - validation: the long-context NLL on `validation_windows` must not rise;
//     - short-context guard: perplexity on `short_windows` (trained context) may rise by at most `short_guard`
//       relative to the quantized model without scales.
//   Otherwise the next-best factor is tried (up to `max_tries`), then the band keeps its factor.
// Deterministic: fixed orders, ties keep the current factor; the forward pass is thread-count independent.
// The dev objective can only decrease: a step is taken only when it lowers it.
enum class search_objective { dev_nll, layer_local };
enum class band_order { pressure, natural };

inline const char* to_string(search_objective o) noexcept { return o == search_objective::dev_nll ? "dev_nll" : "layer_local"; }
inline const char* to_string(band_order o) noexcept { return o == band_order::pressure ? "pressure" : "natural"; }

struct search_progress {
  int evaluations = 0;
  int planned = 0;
  double best = 0.0;
  std::string stage;
};

struct search_options {
  band_partition bands;
  scale_variant variant = scale_variant::symmetric;
  scale_granularity granularity = scale_granularity::global;
  double grid_min = 0.5, grid_max = 2.0;
  int grid_points = 9;
  band_order order = band_order::pressure;
  int passes = 1;
  search_objective objective = search_objective::dev_nll;
  rope_scaling scaling;  // the deployed interpolation
  quant_spec quant;
  std::vector<std::vector<int>> calibration_windows;  // GPTQ calibration (default: dev windows cut to L0)
  std::vector<std::vector<int>> validation_windows;   // long-context acceptance set (optional, recommended)
  std::vector<std::vector<int>> short_windows;        // trained-context guard set (optional)
  double short_guard = 0.005;       // max relative perplexity increase on short_windows; < 0 disables the guard
  double min_improvement = 1e-4;    // relative dev-objective decrease a step needs
  int max_tries = 3;                // candidates tried per band when checks reject the best
  bool force_futile = false;        // run the symmetric variant even when the equivariance check says it is a no-op
  int threads = 0;
  std::function<void(const search_progress&)> progress;
};

struct search_step {
  int pass = 0, unit = 0, band = 0;
  char which = 'q';  // 'q': the variant's factor; 's' / 't': balance / temperature of the independent variant
  double factor = 1.0;
  double objective = 0.0;
  bool accepted = false;
  std::string note;
};

struct search_result {
  band_scales scales;
  bool skipped = false;
  std::string message;
  equivariance_report equivariance;
  std::vector<double> grid;
  std::vector<double> band_pressure;  // per band (layer average), on the quantized model
  double baseline_objective = 0.0, final_objective = 0.0;
  double baseline_validation = std::numeric_limits<double>::quiet_NaN(), final_validation = baseline_validation;
  double baseline_short = std::numeric_limits<double>::quiet_NaN(), final_short = baseline_short;
  int evaluations = 0;
  std::vector<search_step> steps;
};

// Log-spaced factors exp(linspace(ln min, ln max, points)), with 1 added when absent.
inline std::vector<double> log_grid(double lo, double hi, int points) {
  if (!(lo > 0.0) || !(hi >= lo) || points < 1) throw invalid_argument("grid needs 0 < min <= max and points >= 1");
  std::vector<double> g;
  for (int i = 0; i < points; ++i)
    g.push_back(points == 1 ? lo : std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * i / (points - 1)));
  bool has_one = false;
  for (double& x : g)
    if (std::abs(x - 1.0) < 1e-9) {
      x = 1.0;
      has_one = true;
    }
  if (!has_one) g.push_back(1.0);
  std::sort(g.begin(), g.end());
  return g;
}

// NLL of tokens[t] given the prefix, t = 1..n-1, from final hidden states (n, dim) (after the output norm).
inline std::vector<double> nll_from_hidden(const llama_model& model, const tensor& hidden, const std::vector<int>& tokens,
                                           int threads = 0) {
  const auto n = hidden.rows();
  std::vector<double> nll(static_cast<std::size_t>(std::max<Eigen::Index>(0, n - 1)));
  const tensor& cls = model.classifier();
  const Eigen::Index chunk = detail::gemm_row_chunk;
  const int tasks = static_cast<int>((n - 1 + chunk - 1) / chunk);
  detail::parallel_for(tasks, threads, [&](int task) {
    const Eigen::Index r0 = task * chunk, m = std::min(chunk, n - 1 - r0);
    const tensor logits = hidden.middleRows(r0, m) * cls.transpose();
    for (Eigen::Index i = 0; i < m; ++i) {
      const float mx = logits.row(i).maxCoeff();
      double sum = 0.0;
      for (Eigen::Index j = 0; j < logits.cols(); ++j) sum += std::exp(static_cast<double>(logits(i, j) - mx));
      nll[static_cast<std::size_t>(r0 + i)] =
          std::log(sum) + mx - static_cast<double>(logits(i, tokens[static_cast<std::size_t>(r0 + i + 1)]));
    }
  });
  return nll;
}

namespace detail {

// The search's working state: full-precision weights, the quantized model with the current band scales, and the
// cached residual input of every layer for every dev window (valid up to the layer being searched).
class search_state {
 public:
  search_state(const llama_model& fp, const search_options& o, const std::vector<std::vector<int>>& dev)
      : fp_(fp), o_(o), dev_(dev),
        scales_(o.bands, o.variant, o.granularity, fp.config.n_layers, fp.config.n_kv_heads) {
    quantized_ = fp;
    const auto& w = o.quant.weights;
    if (w.method == weight_method::gptq) {
      auto calib = o.calibration_windows;
      if (calib.empty())
        for (const auto& d : dev)
          calib.emplace_back(d.begin(), d.begin() + std::min<std::size_t>(d.size(), static_cast<std::size_t>(fp.config.original_ctx)));
      gptq_quantize_model(quantized_, calib, w, rope_scaling::none(), o.threads);
    } else {
      quantize_weights(quantized_, w);
    }
    hooks_ = make_quant_hooks(o.quant, fp.config);
    work_ = quantized_;
    // Scaling commutes with GPTQ's per-row grids (equivariant), and GPTQ cannot be re-run per candidate: scale the
    // GPTQ result. RTN and ggml formats are re-quantized from the scaled full-precision rows, exactly what
    // quantizing an exported patched model does.
    requantize_ = w.method == weight_method::rtn || w.method == weight_method::ggml;
    int longest = 0;
    for (const auto& d : dev) longest = std::max(longest, static_cast<int>(d.size()));
    for (const auto& d : o.validation_windows) longest = std::max(longest, static_cast<int>(d.size()));
    for (const auto& d : o.short_windows) longest = std::max(longest, static_cast<int>(d.size()));
    table_ = rope_table::for_positions(fp.config.rope_geometry(), o.scaling, longest);
    if (o.objective == search_objective::layer_local) capture_reference();
  }

  band_scales& scales() noexcept { return scales_; }
  const llama_model& quantized() const noexcept { return quantized_; }
  const forward_hooks& hooks() const noexcept { return hooks_; }
  const rope_table& table() const noexcept { return table_; }

  // Rewrites W_Q / W_K of `layer` from the current scales.
  void refresh_layer(int layer) {
    std::vector<float> qf, kf;
    band_row_factors(scales_, fp_.config, layer, qf, kf);
    const auto l = static_cast<std::size_t>(layer);
    const auto& src = requantize_ ? fp_.layers[l] : quantized_.layers[l];
    auto& dst = work_.layers[l];
    dst.wq = src.wq;
    dst.wk = src.wk;
    for (Eigen::Index r = 0; r < dst.wq.rows(); ++r) dst.wq.row(r) *= qf[static_cast<std::size_t>(r)];
    for (Eigen::Index r = 0; r < dst.wk.rows(); ++r) dst.wk.row(r) *= kf[static_cast<std::size_t>(r)];
    if (requantize_) {
      if (o_.quant.weights.method == weight_method::rtn) {
        rtn_quantize(dst.wq, o_.quant.weights);
        rtn_quantize(dst.wk, o_.quant.weights);
      } else {
        ggml_fake_quantize(dst.wq, o_.quant.weights.ggml);
        ggml_fake_quantize(dst.wk, o_.quant.weights.ggml);
      }
    }
  }

  // Caches the residual input of layer `layer` for every dev window, with the current scales of layers before it.
  void cache_inputs(int layer) {
    inputs_.resize(dev_.size());
    cached_layer_ = layer;
    for (std::size_t w = 0; w < dev_.size(); ++w) {
      inputs_[w] = embed_tokens(work_, dev_[w]);
      if (layer == 0) continue;
      forward_hooks h = hooks_;
      h.last_layer = layer - 1;
      kv_cache cache(work_.config, static_cast<int>(dev_[w].size()));
      forward_layers(work_, inputs_[w], 0, cache, table_, o_.threads, &h);
    }
  }

  // Dev objective with the current scales, starting from the cached inputs of `first_layer` (layers before it
  // must not have changed since cache_inputs(first_layer)).
  // With `whole_model` (first_layer 0) the layer-local objective averages over every layer whatever the unit.
  double dev_objective(int first_layer, bool whole_model = false) {
    QROAR_ASSERT(first_layer == cached_layer_, "dev inputs cached for another layer");
    ++evaluations_;
    if (o_.objective == search_objective::dev_nll) {
      double sum = 0.0;
      long long count = 0;
      for (std::size_t w = 0; w < dev_.size(); ++w) {
        tensor x = inputs_[w];
        kv_cache cache(work_.config, static_cast<int>(dev_[w].size()));
        forward_layers(work_, x, first_layer, cache, table_, o_.threads, &hooks_);
        tensor hidden;
        rmsnorm_rows(x, work_.final_norm, work_.config.norm_eps, hidden);
        for (double v : nll_from_hidden(work_, hidden, dev_[w], o_.threads)) sum += v;
        count += static_cast<long long>(dev_[w].size()) - 1;
      }
      return sum / static_cast<double>(count);
    }
    // layer-local: relative attention-output error against the full-precision interpolated model, averaged over
    // the layers in scope (the searched layer for per-layer units; every layer for global units)
    const int last = whole_model || o_.granularity == scale_granularity::global ? work_.config.n_layers - 1 : first_layer;
    double total = 0.0;
    for (std::size_t w = 0; w < dev_.size(); ++w) {
      tensor x = inputs_[w];
      forward_hooks h = hooks_;
      h.last_layer = last;
      h.attention_output = chain_hooks(h.attention_output, [&](int l, int, tensor& att) {
        const tensor& ref = reference_att_[w][static_cast<std::size_t>(l)];
        total += (att - ref).squaredNorm() / std::max(1e-30, static_cast<double>(ref.squaredNorm()));
      });
      kv_cache cache(work_.config, static_cast<int>(dev_[w].size()));
      forward_layers(work_, x, first_layer, cache, table_, o_.threads, &h);
    }
    return total / static_cast<double>(dev_.size() * static_cast<std::size_t>(last - first_layer + 1));
  }

  // Mean NLL of whole windows with the current scales (validation and guard sets).
  double mean_nll(const std::vector<std::vector<int>>& windows) {
    double sum = 0.0;
    long long count = 0;
    for (const auto& w : windows) {
      for (double v : window_nll(work_, w, table_, o_.threads, &hooks_)) sum += v;
      count += static_cast<long long>(w.size()) - 1;
    }
    return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
  }

  int evaluations() const noexcept { return evaluations_; }

 private:
  static void rmsnorm_rows(const tensor& x, const vector& g, float eps, tensor& out) { detail::rmsnorm_rows(x, g, eps, out); }

  void capture_reference() {
    reference_att_.resize(dev_.size());
    for (std::size_t w = 0; w < dev_.size(); ++w) {
      auto cap = capture_attention(fp_, dev_[w], table_, nullptr, o_.threads);
      for (auto& c : cap) reference_att_[w].push_back(std::move(c.att));
    }
  }

  const llama_model& fp_;
  const search_options& o_;
  const std::vector<std::vector<int>>& dev_;
  band_scales scales_;
  llama_model quantized_, work_;
  forward_hooks hooks_;
  bool requantize_ = false;
  rope_table table_;
  std::vector<tensor> inputs_;
  int cached_layer_ = -1;
  std::vector<std::vector<tensor>> reference_att_;
  int evaluations_ = 0;
};

}  // namespace detail

// Searches per-band W_Q/W_K factors for `model` (full precision) deployed with `o.quant` and `o.scaling`, on the
// dev windows (token ids, each run at positions 0..n-1; use windows longer than the trained context).
inline search_result search_band_scales(const llama_model& model, const std::vector<std::vector<int>>& dev_windows,
                                        const search_options& o) {
  const llama_config& c = model.config;
  if (dev_windows.empty()) throw invalid_argument("the search needs at least one dev window");
  for (const auto& w : dev_windows)
    if (w.size() < 2) throw invalid_argument("dev windows need at least 2 tokens");
  if (o.bands.n_pairs != c.rope_geometry().pairs())
    throw invalid_argument("the band partition covers " + std::to_string(o.bands.n_pairs) + " pairs, the model has " +
                           std::to_string(c.rope_geometry().pairs()));
  if (o.passes < 1) throw invalid_argument("the search needs at least one pass");
  search_result r;
  r.grid = log_grid(o.grid_min, o.grid_max, o.grid_points);
  r.equivariance = is_row_scale_equivariant(o.quant, o.bands, c.rope_geometry());
  r.scales = band_scales(o.bands, o.variant, o.granularity, c.n_layers, c.n_kv_heads);
  if (o.variant == scale_variant::symmetric && r.equivariance.symmetric_is_noop() && !o.force_futile) {
    r.skipped = true;
    r.message = "skipped the symmetric search: " + r.equivariance.summary();
    return r;
  }
  detail::search_state st(model, o, dev_windows);
  const int nb = static_cast<int>(o.bands.size());

  // Interpolation Pressure on the quantized model (first dev window) orders the bands.
  std::vector<std::vector<int>> band_order_per_layer(static_cast<std::size_t>(c.n_layers));
  {
    const auto cap = capture_attention(st.quantized(), dev_windows.front(), st.table(), &st.hooks(), o.threads);
    diagnostics_options dopt;
    dopt.original_ctx = c.original_ctx;
    dopt.threads = o.threads;
    const auto inv = inverse_frequencies(o.scaling, c.rope_geometry(), static_cast<int>(dev_windows.front().size()));
    const auto diag = compute_band_diagnostics(c, cap, o.bands, inv, dopt);
    r.band_pressure = diag.per_band(diag.interpolation_pressure);
    for (int l = 0; l < c.n_layers; ++l) {
      auto& ord = band_order_per_layer[static_cast<std::size_t>(l)];
      ord.resize(static_cast<std::size_t>(nb));
      std::iota(ord.begin(), ord.end(), 0);
      if (o.order == band_order::pressure) {
        const bool global = o.granularity == scale_granularity::global;
        std::stable_sort(ord.begin(), ord.end(), [&](int a, int b) {
          const double pa = global ? r.band_pressure[static_cast<std::size_t>(a)] : diag.at(diag.interpolation_pressure, l, a);
          const double pb = global ? r.band_pressure[static_cast<std::size_t>(b)] : diag.at(diag.interpolation_pressure, l, b);
          return pa > pb;
        });
      }
    }
  }

  const bool check_short = o.short_guard >= 0.0 && !o.short_windows.empty();
  const bool check_validation = !o.validation_windows.empty();
  auto layer_of_unit = [&](int unit) {
    return o.granularity == scale_granularity::global ? 0
           : o.granularity == scale_granularity::per_layer ? unit
                                                          : unit / c.n_kv_heads;
  };
  auto refresh_unit = [&](int unit) {
    if (o.granularity == scale_granularity::global)
      for (int l = 0; l < c.n_layers; ++l) st.refresh_layer(l);
    else
      st.refresh_layer(layer_of_unit(unit));
  };
  // The independent variant is searched along its natural directions rather than along g_q and g_k: a balance
  // s (W_Q x s, W_K / s: the symmetric direction) and a temperature t (W_Q x t), so g_q = s*t, g_k = 1/s. Moving
  // g_q or g_k alone cannot follow the symmetric direction in one step. When symmetric scaling is a no-op for the
  // quantizer, only the temperature is searched.
  const bool balance_futile = r.equivariance.symmetric_is_noop() && !o.force_futile;
  const int coords = o.variant == scale_variant::independent ? 2 : 1;
  search_progress prog;
  prog.planned = o.passes * r.scales.units() * nb * (o.variant == scale_variant::independent && !balance_futile ? 2 : 1) *
                 (static_cast<int>(r.grid.size()) - 1);
  prog.stage = "search";

  st.cache_inputs(0);
  r.baseline_objective = st.dev_objective(0, true);
  double current = r.baseline_objective;
  if (check_validation) r.baseline_validation = r.final_validation = st.mean_nll(o.validation_windows);
  if (check_short) r.baseline_short = r.final_short = st.mean_nll(o.short_windows);
  double current_validation = r.baseline_validation;

  for (int pass = 0; pass < o.passes; ++pass)
    for (int unit = 0; unit < r.scales.units(); ++unit) {
      const int first_layer = o.granularity == scale_granularity::global ? 0 : layer_of_unit(unit);
      st.cache_inputs(first_layer);
      current = st.dev_objective(first_layer);  // inputs changed with earlier units' scales
      for (int band : band_order_per_layer[static_cast<std::size_t>(layer_of_unit(unit))])
        for (int coord = 0; coord < coords; ++coord) {
          const bool independent = o.variant == scale_variant::independent;
          if (independent && coord == 0 && balance_futile) continue;
          // 'q': the variant's own factor (symmetric g, query-only g); 's'/'t': balance / temperature (independent)
          const char which = !independent ? 'q' : coord == 0 ? 's' : 't';
          const std::size_t idx = r.scales.index(unit, band);
          const double keep_q = r.scales.query[idx], keep_k = r.scales.key[idx];
          const double keep_s = 1.0 / keep_k, keep_t = keep_q * keep_k;
          const double keep = which == 'q' ? keep_q : which == 's' ? keep_s : keep_t;
          auto set = [&](double f) {
            if (which == 'q') r.scales.set(unit, band, f, keep_k);
            else if (which == 's') r.scales.set(unit, band, f * keep_t, 1.0 / f);
            else r.scales.set(unit, band, keep_s * f, keep_k);
            st.scales() = r.scales;
            refresh_unit(unit);
          };
          std::vector<std::pair<double, double>> tried;  // (objective, factor)
          for (double f : r.grid) {
            if (f == keep) continue;
            set(f);
            const double obj = st.dev_objective(first_layer);
            tried.emplace_back(obj, f);
            r.steps.push_back({pass, unit, band, which, f, obj, false, ""});
            ++prog.evaluations;
            prog.best = std::min(current, obj);
            if (o.progress) o.progress(prog);
          }
          std::stable_sort(tried.begin(), tried.end());
          bool moved = false;
          for (int t = 0; t < std::min<int>(o.max_tries, static_cast<int>(tried.size())); ++t) {
            const auto [obj, f] = tried[static_cast<std::size_t>(t)];
            if (!(obj < current - o.min_improvement * std::abs(current))) break;
            set(f);
            std::string note;
            double val = current_validation, shrt = r.final_short;
            if (check_validation) {
              val = st.mean_nll(o.validation_windows);
              if (val > current_validation) note = "rejected: validation NLL rose";
            }
            if (note.empty() && check_short) {
              shrt = st.mean_nll(o.short_windows);
              if (std::exp(shrt - r.baseline_short) - 1.0 > o.short_guard) note = "rejected: short-context guard";
            }
            for (auto& s : r.steps)
              if (s.pass == pass && s.unit == unit && s.band == band && s.which == which && s.factor == f)
                s.note = note.empty() ? "accepted" : note;
            if (note.empty()) {
              for (auto& s : r.steps)
                if (s.pass == pass && s.unit == unit && s.band == band && s.which == which && s.factor == f) s.accepted = true;
              current = obj;
              current_validation = val;
              r.final_validation = val;
              r.final_short = shrt;
              moved = true;
              break;
            }
          }
          if (!moved) set(keep);
        }
    }
  // final objective over the whole model with the chosen scales
  st.cache_inputs(0);
  r.final_objective = st.dev_objective(0, true);
  r.evaluations = st.evaluations();
  r.message = r.scales.is_identity() ? "no band factor improved the dev objective under the acceptance checks"
                                     : "found band scales";
  return r;
}

}  // namespace v0
}  // namespace qroar
