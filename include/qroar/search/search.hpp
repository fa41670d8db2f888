// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "../detail/denormals.hpp"
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
//     - validation: the long-context NLL on `validation_windows` must not rise: with `validation_rule::each_window`
//       (the default) the mean NLL of no window may rise, so that one document that gets worse rejects the step;
//       with `validation_rule::pooled` only the mean over all windows counts (a step that helps one document a
//       lot and hurts another passes: docs/results.md, "Acceptance rules and refinement");
//     - short-context guard: perplexity on `short_windows` (trained context) may rise by at most `short_guard`
//       relative to the quantized model without scales: their pooled perplexity, and with
//       `validation_rule::each_window` also each document's (`short_window_document`: the short windows cut from
//       one validation window, short_context_windows()), so that one document's short-context text getting worse
//       rejects the step.
//   Otherwise the next-best factor is tried (up to `max_tries`), then the band keeps its factor.
//   With `refine` = R > 0, the grid is followed by R bisection steps in log scale around the best factor so far
//   (the current one included): step k evaluates best * exp(+-h / 2^k), h the grid's log spacing
//   ln(max/min) / (points - 1), within [grid_min, grid_max]. A 9-point grid over 0.25..4 (ratio sqrt 2) with R = 2
//   resolves factors to a ratio of 2^(1/8) (9%) for 4 more evaluations per band instead of 24 more grid points.
// Deterministic: fixed orders, ties keep the current factor; the forward pass is thread-count independent.
// The dev objective can only decrease: a step is taken only when it lowers it.
// Objectives (docs/method.md, "Objectives"):
//   dev_nll     mean next-token NLL of the quantized + scaled model on the dev windows: end to end; it also retunes
//               the interpolation (a per-band attention temperature), so part of its gain is not quantization's;
//   kl_fp       mean KL(p_fp || p_q) of the quantized + scaled model's next-token distribution from the
//               full-precision model's under the same interpolation, over the dev windows' positions: the target
//               of quantization calibration (llama.cpp's perplexity --kl-divergence measures the same), end to end;
//               its minimum is the full-precision model, so it repairs quantization only;
//   layer_local the cheap layer-local form of kl_fp: the relative attention-output error against the
//               full-precision model, per layer.
enum class search_objective { dev_nll, layer_local, kl_fp };
enum class band_order { pressure, natural };
// How a band's grid is walked: every point, or coarse-to-fine (every second point counted from the current
// factor, then the two neighbours of the best: 6 of the 8 other points of a 9-point grid, 4 of 6 for 7 points).
// Coarse-to-fine assumes the objective is unimodal in the factor at the grid's resolution.
enum class grid_strategy { exhaustive, coarse_to_fine };
enum class validation_rule { each_window, pooled };

inline const char* to_string(search_objective o) noexcept {
  return o == search_objective::dev_nll ? "dev_nll" : o == search_objective::kl_fp ? "kl_fp" : "layer_local";
}
inline const char* to_string(band_order o) noexcept { return o == band_order::pressure ? "pressure" : "natural"; }
inline const char* to_string(grid_strategy g) noexcept {
  return g == grid_strategy::exhaustive ? "exhaustive" : "coarse_to_fine";
}
inline const char* to_string(validation_rule v) noexcept { return v == validation_rule::each_window ? "each_window" : "pooled"; }

struct search_progress {
  int evaluations = 0;
  int planned = 0;
  double best = 0.0;
  std::string stage;
};

struct search_options {
  band_partition bands;
  // Which factors are searched. Empty (the default, `--variant auto`): the variants that can act under `quant`
  // are each searched and the best on validation is kept (auto_variant_candidates, search_band_scales).
  std::optional<scale_variant> variant;
  scale_granularity granularity = scale_granularity::global;
  double grid_min = 0.5, grid_max = 2.0;
  int grid_points = 9;
  band_order order = band_order::pressure;
  int passes = 1;
  search_objective objective = search_objective::dev_nll;
  grid_strategy strategy = grid_strategy::exhaustive;
  int refine = 0;  // bisection steps around each band's best factor after its grid (see search_band_scales)
  rope_scaling scaling;  // the deployed interpolation
  quant_spec quant;
  std::vector<std::vector<int>> calibration_windows;  // GPTQ calibration (default: dev windows cut to L0)
  std::vector<std::vector<int>> validation_windows;   // long-context acceptance set (optional, recommended)
  validation_rule validation = validation_rule::each_window;  // no window's NLL may rise, or only their pooled mean
  // each_window: how far one window's mean NLL may rise, in block standard errors of its per-token NLL change
  // (validation_margin): 0 (the default) allows no rise at all; 2 allows rises within the window's own noise.
  // The pooled mean may never rise.
  double validation_noise_z = 0.0;
  std::vector<std::vector<int>> short_windows;        // trained-context guard set (optional)
  std::vector<int> short_window_document;             // document of each short window (empty: one each)
  double short_guard = 0.005;       // max relative perplexity increase on short_windows; < 0 disables the guard
  double min_improvement = 1e-4;    // relative dev-objective decrease a step needs
  int max_tries = 3;                // candidates tried per band when checks reject the best
  bool force_futile = false;        // run the symmetric variant even when the equivariance check says it is a no-op
  // After the search, measure the same scales on the full-precision model under the same interpolation (the
  // control: search_result::control, measure_full_precision_control).
  bool full_precision_control = true;
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

// One variant searched by `variant = auto`: its final objectives (validation NaN without validation windows).
struct variant_trial {
  scale_variant variant = scale_variant::symmetric;
  double final_objective = 0.0;
  double final_validation = std::numeric_limits<double>::quiet_NaN();
  int evaluations = 0;  // of the objective, with the baseline
  int candidates = 0;   // candidate factors tried (its steps)
  bool chosen = false;
};

// A search result beside its full-precision control, on the validation windows (the dev windows without them):
// mean NLL of the quantized model (as searched) and of the full-precision model under the same interpolation,
// each without and with the scales. The quantization-specific change is the quantized model's relative perplexity
// change minus the full-precision model's: what the scales repair of quantization, beyond what they change in the
// interpolation itself (docs/method.md, "The full-precision control").
struct search_control {
  std::string windows;  // "validation" or "dev"; empty when not measured
  double fp_baseline = std::numeric_limits<double>::quiet_NaN(), fp_final = fp_baseline;
  double quantized_baseline = fp_baseline, quantized_final = fp_baseline;
  // relative perplexity changes exp(final - baseline) - 1
  double fp_change() const { return std::exp(fp_final - fp_baseline) - 1.0; }
  double quantized_change() const { return std::exp(quantized_final - quantized_baseline) - 1.0; }
  double quantization_specific_change() const { return quantized_change() - fp_change(); }
  bool measured() const noexcept { return !windows.empty(); }
};

struct search_result {
  band_scales scales;
  search_control control;  // the full-precision control (search_options::full_precision_control)
  scale_variant variant = scale_variant::symmetric;  // the variant searched (auto: the one kept)
  std::string variant_reason;                       // why that variant (auto: the candidates and the rule)
  std::vector<variant_trial> variants;              // auto: every variant searched, in order
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

// Log-spaced factors min * (max/min)^(i / (points - 1)), i = 0..points-1, with 1 added when absent. Computed with
// pow rather than exp(linspace(ln min, ln max)): the endpoints are exact, and so is every power of two of a grid
// such as 0.25..4 with 5 points (pow is exact where the result is representable), which keeps a --patch of those
// factors exact.
inline std::vector<double> log_grid(double lo, double hi, int points) {
  if (!(lo > 0.0) || !(hi >= lo) || !std::isfinite(hi) || points < 1)
    throw invalid_argument("grid needs 0 < min <= max and points >= 1");
  std::vector<double> g;
  for (int i = 0; i < points; ++i)
    g.push_back(points == 1 ? lo
                : i == points - 1 ? hi
                                  : lo * std::pow(hi / lo, static_cast<double>(i) / (points - 1)));
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

// Index of the grid point nearest to f in log scale (the grid is sorted and positive).
inline int nearest_grid_index(const std::vector<double>& grid, double f) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(grid.size()); ++i)
    if (std::abs(std::log(grid[static_cast<std::size_t>(i)] / f)) < std::abs(std::log(grid[static_cast<std::size_t>(best)] / f)))
      best = i;
  return best;
}

// The short-context guard set of a list of long windows: every whole, non-overlapping chunk of `trained_ctx` tokens
// of each window (a window shorter than that gives itself), each run from position 0 as text at the trained
// context is, with the index of the window it came from as its document. Sets o.short_windows and
// o.short_window_document. `max_chunks_per_window` > 0 keeps that many chunks of each window, evenly spaced
// (chunk floor(i * chunks / max) for i = 0..max-1; 1 keeps the first): each guard check runs its chunks from the
// searched layer through the classifier, so the guard's cost grows with their number.
inline void short_context_windows(search_options& o, const std::vector<std::vector<int>>& windows, int trained_ctx,
                                  int max_chunks_per_window = 0) {
  if (trained_ctx < 2) throw invalid_argument("the trained context must be at least 2 tokens");
  if (max_chunks_per_window < 0) throw invalid_argument("max_chunks_per_window must be >= 0 (0: every chunk)");
  o.short_windows.clear();
  o.short_window_document.clear();
  const auto len = static_cast<std::size_t>(trained_ctx);
  for (std::size_t w = 0; w < windows.size(); ++w) {
    const auto& t = windows[w];
    if (t.size() < 2) continue;
    const std::size_t chunks = std::max<std::size_t>(1, t.size() / len);
    const auto keep = max_chunks_per_window > 0 ? std::min(chunks, static_cast<std::size_t>(max_chunks_per_window)) : chunks;
    for (std::size_t i = 0; i < keep; ++i) {
      const std::size_t c = i * chunks / keep;
      const auto first = t.begin() + static_cast<long>(c * len);
      o.short_windows.emplace_back(first, first + static_cast<long>(std::min(len, t.size() - c * len)));
      o.short_window_document.push_back(static_cast<int>(w));
    }
  }
}

// Blocks of the batch-means standard error below: 16 contiguous blocks (fewer for windows under 16 tokens).
inline constexpr int validation_noise_blocks = 16;

// The noise margin of one validation window's NLL change: z times the batch-means (block) standard error of the
// mean of the paired per-token differences d_t = candidate_t - current_t. The tokens are cut into B contiguous
// blocks of (nearly) equal length, block means m_b, and
//   SE = sqrt( sum_b (m_b - mean(m))^2 / (B (B - 1)) )
// (the batch-means estimator of the standard error of a mean of autocorrelated samples: neighbouring tokens'
// changes are correlated, so the iid formula sd / sqrt(n) would understate it; Flegal & Jones 2010, "Batch means
// and spectral variance estimators in MCMC"). Zero for z = 0 or fewer than 2 blocks.
inline double validation_margin(const std::vector<double>& candidate, const std::vector<double>& current, double z) {
  QROAR_ASSERT(candidate.size() == current.size(), "per-token NLLs of one window");
  const auto n = static_cast<long long>(candidate.size());
  const long long blocks = std::min<long long>(validation_noise_blocks, n);
  if (!(z > 0.0) || blocks < 2) return 0.0;
  std::vector<double> means(static_cast<std::size_t>(blocks), 0.0);
  for (long long b = 0; b < blocks; ++b) {
    const long long first = b * n / blocks, last = (b + 1) * n / blocks;
    double sum = 0.0;
    for (long long t = first; t < last; ++t)
      sum += candidate[static_cast<std::size_t>(t)] - current[static_cast<std::size_t>(t)];
    means[static_cast<std::size_t>(b)] = sum / static_cast<double>(last - first);
  }
  const double mean = std::accumulate(means.begin(), means.end(), 0.0) / static_cast<double>(blocks);
  double ss = 0.0;
  for (double m : means) ss += (m - mean) * (m - mean);
  return z * std::sqrt(ss / static_cast<double>(blocks * (blocks - 1)));
}

// NLL of tokens[t] given the prefix, t = 1..n-1, from final hidden states (n, dim) (after the output norm): the
// computation of window_nll (detail::nll_from_hidden in model/forward.hpp).
inline std::vector<double> nll_from_hidden(const llama_model& model, const tensor& hidden, const std::vector<int>& tokens,
                                           int threads = 0) {
  return detail::nll_from_hidden(model, hidden, tokens, threads);
}

namespace detail {

// KL(p_ref || p) of the next-token distributions at rows 0..n-2 of two final hidden states (n, dim) (after the
// output norm; row t predicts token t+1, the rows nll_from_hidden scores), with logits z_ref = h_ref C_ref^T and
// z = h C^T from each model's own classifier:
//   KL_t = sum_v p_ref(v) (log p_ref(v) - log p(v)) = sum_v p_ref(v) (z_ref(v) - z(v)) - lse(z_ref) + lse(z)
// (p = softmax(z), lse = log-sum-exp; sums in double). Returns n-1 values, each >= 0 up to rounding.
inline std::vector<double> kl_from_hidden(const llama_model& ref_model, const tensor& ref_hidden, const llama_model& model,
                                          const tensor& hidden, int threads) {
  const auto n = hidden.rows();
  QROAR_ASSERT(ref_hidden.rows() == n && ref_hidden.cols() == hidden.cols(), "one reference row per hidden row");
  if (n < 2) return {};
  std::vector<double> kl(static_cast<std::size_t>(n - 1));
  const tensor& ref_cls = ref_model.classifier();
  const tensor& cls = model.classifier();
  QROAR_ASSERT(ref_cls.rows() == cls.rows() && ref_cls.cols() == cls.cols(), "the two classifiers differ in shape");
  using arch = xsimd::default_arch;
  const Eigen::Index vocab = cls.rows(), dim = cls.cols();
  const Eigen::Index panels = (vocab + kernels::gemm_panel_width<arch>() - 1) / kernels::gemm_panel_width<arch>();
  // slots 1 and 2 of this thread's scratch (slot 2 is the FFN's, free between layers)
  const float* ref_packed = pack_transposed(ref_cls, threads, 1);
  const float* packed = pack_transposed(cls, threads, 2);
  const Eigen::Index chunk = gemm_row_chunk;
  const int tasks = static_cast<int>((n - 1 + chunk - 1) / chunk);
  parallel_for(tasks, threads, [&](int task) {
    const Eigen::Index r0 = task * chunk, m = std::min(chunk, n - 1 - r0);
    float* ref_logits = scratch(0, static_cast<std::size_t>(2 * m * vocab));  // (m, vocab) twice
    float* logits = ref_logits + m * vocab;
    kernels::gemm_nt{}(arch{}, ref_hidden.data() + r0 * dim, dim, m, ref_packed, vocab, dim, 0, panels, ref_logits, vocab);
    kernels::gemm_nt{}(arch{}, hidden.data() + r0 * dim, dim, m, packed, vocab, dim, 0, panels, logits, vocab);
    for (Eigen::Index i = 0; i < m; ++i) {
      const float* zr = ref_logits + i * vocab;
      const float* z = logits + i * vocab;
      const double lse_ref = kernels::logsumexp{}(arch{}, zr, static_cast<std::size_t>(vocab));
      const double lse = kernels::logsumexp{}(arch{}, z, static_cast<std::size_t>(vocab));
      double cross = 0.0;  // sum_v p_ref(v) (z_ref(v) - z(v))
      for (Eigen::Index v = 0; v < vocab; ++v)
        cross += std::exp(static_cast<double>(zr[v]) - lse_ref) * (static_cast<double>(zr[v]) - static_cast<double>(z[v]));
      kl[static_cast<std::size_t>(r0 + i)] = cross - lse_ref + lse;
    }
  });
  return kl;
}

// The search's working state: full-precision weights, the quantized model with the current band scales, and the
// cached residual input of every layer for every dev window (valid up to the layer being searched).
class search_state {
 public:
  search_state(const llama_model& fp, const search_options& o, const std::vector<std::vector<int>>& dev)
      : fp_(fp), o_(o), dev_(dev),
        scales_(o.bands, o.variant.value_or(scale_variant::symmetric), o.granularity, fp.config.n_layers,
                fp.config.n_kv_heads) {
    work_ = fp;  // the only copy of the model: quantized here, its W_Q/W_K rewritten per candidate
    const auto& w = o.quant.weights;
    if (w.method == weight_method::gptq) {
      auto calib = o.calibration_windows;
      if (calib.empty())
        for (const auto& d : dev)
          calib.emplace_back(d.begin(), d.begin() + std::min<std::size_t>(d.size(), static_cast<std::size_t>(fp.config.original_ctx)));
      gptq_quantize_model(work_, calib, w, rope_scaling::none(), o.threads);
    } else {
      quantize_weights(work_, w);
    }
    hooks_ = make_quant_hooks(o.quant, fp.config);
    // Scaling commutes with GPTQ's per-row grids (equivariant), and GPTQ cannot be re-run per candidate: scale the
    // GPTQ result. RTN and ggml formats are re-quantized from the scaled full-precision rows, exactly what
    // quantizing an exported patched model does.
    requantize_ = w.method == weight_method::rtn || w.method == weight_method::ggml;
    if (!requantize_)
      for (const auto& L : work_.layers) {
        base_wq_.push_back(L.wq);
        base_wk_.push_back(L.wk);
      }
    int longest = 0;
    for (const auto& d : dev) longest = std::max(longest, static_cast<int>(d.size()));
    for (const auto& d : o.validation_windows) longest = std::max(longest, static_cast<int>(d.size()));
    for (const auto& d : o.short_windows) longest = std::max(longest, static_cast<int>(d.size()));
    table_ = rope_table::for_positions(fp.config.rope_geometry(), o.scaling, longest);
    dev_set_.windows = &dev;
    validation_set_.windows = &o.validation_windows;
    short_set_.windows = &o.short_windows;
    if (o.objective == search_objective::kl_fp) fp_hidden_dev_ = full_precision_hidden(dev);
  }

  band_scales& scales() noexcept { return scales_; }
  // The quantized model with the current scales (identity before the search moves any).
  const llama_model& quantized() const noexcept { return work_; }
  const forward_hooks& hooks() const noexcept { return hooks_; }
  const rope_table& table() const noexcept { return table_; }

  // Layer-local objective only, before any scale moves: runs the full-precision model over every dev window
  // (keeping each layer's attention output as the reference) and the quantized model (comparing its attention
  // outputs with them), and returns the baseline objective, the mean relative error over windows and layers.
  // window0 receives the quantized model's post-RoPE q and k of the first window (the diagnostics' input).
  double reference_and_baseline(std::vector<layer_capture>& window0) {
    QROAR_ASSERT(o_.objective == search_objective::layer_local, "the reference is the layer-local objective's");
    ++evaluations_;
    const int layers = work_.config.n_layers;
    reference_att_.assign(dev_.size(), std::vector<tensor>(static_cast<std::size_t>(layers)));
    window0.assign(static_cast<std::size_t>(layers), layer_capture{});
    double total = 0.0;
    for (std::size_t w = 0; w < dev_.size(); ++w) {
      auto& ref = reference_att_[w];
      forward_hooks fp_hooks;
      fp_hooks.attention_output = [&](int l, int, tensor& att) { ref[static_cast<std::size_t>(l)] = std::move(att); };
      tensor x = embed_tokens(fp_, dev_[w]);
      detail::run_layers(fp_, x, 0, nullptr, 0, table_, o_.threads, &fp_hooks);
      forward_hooks h = hooks_;
      h.attention_output = chain_hooks(h.attention_output, [&](int l, int, tensor& att) {
        total += relative_attention_error(ref[static_cast<std::size_t>(l)], att);
      });
      if (w == 0) {
        h.q_post_rope = chain_hooks(h.q_post_rope, [&](int l, int, tensor& q) { window0[static_cast<std::size_t>(l)].q = q; });
        h.k_post_rope = chain_hooks(h.k_post_rope, [&](int l, int, tensor& k) { window0[static_cast<std::size_t>(l)].k = k; });
      }
      x = embed_tokens(work_, dev_[w]);
      detail::run_layers(work_, x, 0, nullptr, 0, table_, o_.threads, &h);
    }
    return total / static_cast<double>(dev_.size() * static_cast<std::size_t>(layers));
  }

  // Rewrites W_Q / W_K of `layer` from the current scales.
  void refresh_layer(int layer) {
    for (auto* set : {&dev_set_, &validation_set_, &short_set_})
      if (set->layer > layer) set->layer = -1;  // those inputs ran through this layer
    std::vector<float> qf, kf;
    band_row_factors(scales_, fp_.config, layer, qf, kf);
    const auto l = static_cast<std::size_t>(layer);
    auto& dst = work_.layers[l];
    dst.wq = requantize_ ? fp_.layers[l].wq : base_wq_[l];
    dst.wk = requantize_ ? fp_.layers[l].wk : base_wk_[l];
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

  // Caches the residual input of layer `layer` for every dev window, with the current scales of layers before it
  // (advance). For the layer-local objective of one layer it also caches that layer's normed input, V (after the
  // V hook) and q/k projections: band scales change only W_Q and W_K, so a candidate reruns only the q/k rows that
  // changed and the attention of the layer (dev_objective).
  void cache_inputs(int layer) {
    advance(dev_set_, layer);
    if (attention_inputs_version_ != dev_set_.version) attention_inputs_layer_ = -1;
    if (layer_only() && attention_inputs_layer_ != layer) {
      const llama_layer& L = work_.layers[static_cast<std::size_t>(layer)];
      normed_.resize(dev_.size());
      values_.resize(dev_.size());
      q_proj_.resize(dev_.size());
      k_proj_.resize(dev_.size());
      for (std::size_t w = 0; w < dev_.size(); ++w) {
        detail::rmsnorm_rows(dev_set_.x[w], L.attn_norm, work_.config.norm_eps, normed_[w]);
        if (hooks_.attention_input) hooks_.attention_input(layer, 0, normed_[w]);
        detail::matmul_transposed(normed_[w], L.wv, values_[w], o_.threads);
        if (hooks_.v) hooks_.v(layer, 0, values_[w]);
        detail::matmul_transposed(normed_[w], L.wq, q_proj_[w], o_.threads);
        detail::matmul_transposed(normed_[w], L.wk, k_proj_[w], o_.threads);
      }
      proj_wq_ = L.wq;
      proj_wk_ = L.wk;
      attention_inputs_layer_ = layer;
      attention_inputs_version_ = dev_set_.version;
    }
  }

  // Brings the cached q/k projections of the layer-local objective up to the layer's current W_Q/W_K (call after
  // a band's factor is decided, so candidates of the next band recompute only their own rows).
  void sync_projections(int layer) {
    if (!layer_only() || attention_inputs_layer_ != layer) return;
    const llama_layer& L = work_.layers[static_cast<std::size_t>(layer)];
    changed_q_.prepare(L.wq, proj_wq_);
    changed_k_.prepare(L.wk, proj_wk_);
    for (std::size_t w = 0; w < dev_.size(); ++w) update_projections(normed_[w], q_proj_[w], k_proj_[w], q_proj_[w], k_proj_[w]);
    proj_wq_ = L.wq;
    proj_wk_ = L.wk;
  }

  // Dev objective with the current scales, starting from the cached inputs of `first_layer` (layers before it
  // must not have changed since cache_inputs(first_layer)).
  // With `whole_model` (first_layer 0) the layer-local objective averages over every layer whatever the unit.
  double dev_objective(int first_layer, bool whole_model = false) {
    QROAR_ASSERT(first_layer == dev_set_.layer, "dev inputs cached for another layer");
    ++evaluations_;
    if (o_.objective == search_objective::dev_nll) return mean_nll_from(dev_set_);
    if (o_.objective == search_objective::kl_fp) return mean_kl_from(dev_set_, fp_hidden_dev_);
    // layer-local: relative attention-output error against the full-precision interpolated model, averaged over
    // the layers in scope (the searched layer for per-layer units; every layer for global units)
    //   e_l = mean over windows of ||att_l - att_l^FP||^2 / ||att_l^FP||^2
    auto relative_error = [&](std::size_t w, int l, const tensor& att) {
      return relative_attention_error(reference_att_[w][static_cast<std::size_t>(l)], att);
    };
    if (!whole_model && layer_only()) {
      QROAR_ASSERT(attention_inputs_layer_ == first_layer, "attention inputs cached for another layer");
      // Only the rows of W_Q/W_K whose factor differs from the cached projections' are projected again: the
      // GEMM computes every output element by the same FMA sequence whatever the other rows, so this equals
      // projecting with the whole matrices bit for bit.
      const llama_layer& L = work_.layers[static_cast<std::size_t>(first_layer)];
      changed_q_.prepare(L.wq, proj_wq_);
      changed_k_.prepare(L.wk, proj_wk_);
      const detail::forward_buffers_lease lease;
      double total = 0.0;
      for (std::size_t w = 0; w < dev_.size(); ++w) {
        // the candidate's projections are built in the forward buffers themselves (attention_heads then rotates
        // them in place without another copy)
        update_projections(normed_[w], q_proj_[w], k_proj_[w], lease->q, lease->k);
        detail::attention_heads(work_, first_layer, normed_[w], nullptr, 0, table_, o_.threads, &hooks_, *lease,
                                {&lease->q, &lease->k, &values_[w]});
        total += relative_error(w, first_layer, lease->att);
      }
      return total / static_cast<double>(dev_.size());
    }
    const int last = work_.config.n_layers - 1;
    double total = 0.0;
    for (std::size_t w = 0; w < dev_.size(); ++w) {
      tensor x = dev_set_.x[w];
      forward_hooks h = hooks_;
      h.last_layer = last;
      h.attention_output = chain_hooks(h.attention_output, [&](int l, int, tensor& att) { total += relative_error(w, l, att); });
      detail::run_layers(work_, x, first_layer, nullptr, 0, table_, o_.threads, &h);
    }
    return total / static_cast<double>(dev_.size() * static_cast<std::size_t>(last - first_layer + 1));
  }

  // Whether one unit's layer-local objective covers its own layer only (per-layer and per-head units).
  bool layer_only() const noexcept {
    return o_.objective == search_objective::layer_local && o_.granularity != scale_granularity::global;
  }

  // Mean NLL of the validation or short-context guard windows with the current scales, from their cached inputs
  // of `first_layer` (the layer being searched: layers before it have their final scales for this pass).
  double validation_nll(int first_layer, std::vector<double>* per_window = nullptr,
                        std::vector<std::vector<double>>* per_token = nullptr) {
    return advance(validation_set_, first_layer), mean_nll_from(validation_set_, per_window, per_token);
  }
  double short_nll(int first_layer, std::vector<double>* per_window = nullptr) {
    return advance(short_set_, first_layer), mean_nll_from(short_set_, per_window);
  }

  int evaluations() const noexcept { return evaluations_; }

 private:
  // Indices of the rows of `now` that differ from `before` (bitwise).
  static std::vector<Eigen::Index> changed_rows(const tensor& now, const tensor& before) {
    std::vector<Eigen::Index> rows;
    for (Eigen::Index r = 0; r < now.rows(); ++r)
      if (std::memcmp(now.data() + r * now.cols(), before.data() + r * before.cols(),
                      sizeof(float) * static_cast<std::size_t>(now.cols())) != 0)
        rows.push_back(r);
    return rows;
  }

  // The rows of W_Q or W_K that differ from those of the cached projections, gathered and packed for
  // kernels::gemm_nt (the layout matmul_transposed packs).
  struct changed_weights {
    std::vector<Eigen::Index> rows;
    tensor gathered;
    std::vector<float, xsimd::aligned_allocator<float, 64>> packed;
    Eigen::Index in = 0;

    void prepare(const tensor& now, const tensor& before) {
      using arch = xsimd::default_arch;
      constexpr Eigen::Index P = kernels::gemm_panel_width<arch>();
      rows = changed_rows(now, before);
      in = now.cols();
      const auto n = static_cast<Eigen::Index>(rows.size());
      gathered.resize(n, in);
      for (Eigen::Index i = 0; i < n; ++i) gathered.row(i) = now.row(rows[static_cast<std::size_t>(i)]);
      packed.resize(kernels::packed_weights_size(n, in, P));
      kernels::pack_weights{}(arch{}, gathered.data(), in, n, in, 0, (n + P - 1) / P, packed.data());
    }
  };

  // q = q_base and k = k_base with the columns of the changed rows (changed_q_, changed_k_) recomputed as x W^T,
  // in one parallel pass over blocks of gemm_row_chunk tokens: copy the block, project it onto the packed rows,
  // scatter the results. gemm_nt gives every element the same FMA sequence whatever the block or the other rows,
  // so this equals projecting with the whole matrices bit for bit. q may be q_base (and k k_base).
  void update_projections(const tensor& x, const tensor& q_base, const tensor& k_base, tensor& q, tensor& k) {
    using arch = xsimd::default_arch;
    constexpr Eigen::Index P = kernels::gemm_panel_width<arch>();
    const Eigen::Index n = x.rows();
    if (&q != &q_base) q.resize(q_base.rows(), q_base.cols());
    if (&k != &k_base) k.resize(k_base.rows(), k_base.cols());
    const auto tasks = static_cast<int>((n + detail::gemm_row_chunk - 1) / detail::gemm_row_chunk);
    detail::parallel_for(tasks, o_.threads, [&](int task) {
      const Eigen::Index r0 = task * detail::gemm_row_chunk, m = std::min(detail::gemm_row_chunk, n - r0);
      for (auto [base, dst, ch] : {std::make_tuple(&q_base, &q, &changed_q_), std::make_tuple(&k_base, &k, &changed_k_)}) {
        const Eigen::Index cols = base->cols();
        if (dst != base) std::copy_n(base->data() + r0 * cols, m * cols, dst->data() + r0 * cols);
        const auto nr = static_cast<Eigen::Index>(ch->rows.size());
        if (nr == 0) continue;
        float* tmp = detail::scratch(0, static_cast<std::size_t>(m * nr));
        kernels::gemm_nt{}(arch{}, x.data() + r0 * x.cols(), x.cols(), m, ch->packed.data(), nr, ch->in, 0,
                           (nr + P - 1) / P, tmp, nr);
        for (Eigen::Index t = 0; t < m; ++t)
          for (Eigen::Index i = 0; i < nr; ++i) (*dst)(r0 + t, ch->rows[static_cast<std::size_t>(i)]) = tmp[t * nr + i];
      }
    });
  }

  // Residual-stream inputs of one layer for a set of windows, advanced layer by layer as the search walks the
  // layers; `version` counts their changes.
  struct window_inputs {
    const std::vector<std::vector<int>>* windows = nullptr;
    std::vector<tensor> x;
    int layer = -1;
    int version = 0;
  };

  // Brings `s` to the input of `layer` with the current scales: layer by layer from the layer it holds, or from
  // the embeddings when it holds none or a later one. Valid because refresh_layer drops inputs that depend on a
  // layer whose scales change.
  void advance(window_inputs& s, int layer) {
    if (s.layer == layer) return;
    const auto& windows = *s.windows;
    if (s.layer < 0 || s.layer > layer) {
      s.x.resize(windows.size());
      for (std::size_t w = 0; w < windows.size(); ++w) s.x[w] = embed_tokens(work_, windows[w]);
      s.layer = 0;
    }
    for (; s.layer < layer; ++s.layer)
      for (auto& x : s.x) {
        forward_hooks h = hooks_;
        h.last_layer = s.layer;
        detail::run_layers(work_, x, s.layer, nullptr, 0, table_, o_.threads, &h);
      }
    ++s.version;
  }

  // The full-precision model's final hidden states (after the output norm) of `windows` under the search's
  // interpolation, without quantization hooks: kl_fp's reference distributions, formed per evaluation through the
  // full-precision classifier (n x dim floats per window rather than n x vocab).
  std::vector<tensor> full_precision_hidden(const std::vector<std::vector<int>>& windows) const {
    std::vector<tensor> out(windows.size());
    for (std::size_t w = 0; w < windows.size(); ++w) {
      tensor x = embed_tokens(fp_, windows[w]);
      detail::run_layers(fp_, x, 0, nullptr, 0, table_, o_.threads, nullptr);
      detail::rmsnorm_rows(x, fp_.final_norm, fp_.config.norm_eps, out[w]);
    }
    return out;
  }

  // The quantized model's final hidden state (after the output norm) of window w of `s`, from its cached input.
  tensor final_hidden_from(const window_inputs& s, std::size_t w) {
    tensor x = s.x[w];
    detail::run_layers(work_, x, s.layer, nullptr, 0, table_, o_.threads, &hooks_);
    tensor hidden;
    detail::rmsnorm_rows(x, work_.final_norm, work_.config.norm_eps, hidden);
    return hidden;
  }

  // Mean KL(p_fp || p_q) over the scored positions of the windows of `s` (token-weighted, as mean_nll_from), from
  // their cached inputs and the full-precision hidden states `reference` of the same windows.
  double mean_kl_from(const window_inputs& s, const std::vector<tensor>& reference) {
    const auto& windows = *s.windows;
    QROAR_ASSERT(reference.size() == windows.size(), "one full-precision reference per window");
    double sum = 0.0;
    long long count = 0;
    for (std::size_t w = 0; w < windows.size(); ++w) {
      const tensor hidden = final_hidden_from(s, w);
      for (double v : kl_from_hidden(fp_, reference[w], work_, hidden, o_.threads)) sum += v;
      count += static_cast<long long>(windows[w].size()) - 1;
    }
    return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
  }

  // Mean NLL of the windows of `s` from their cached inputs: the remaining layers, the final norm, the classifier.
  // per_window, when given, receives each window's own mean; per_token each window's per-token NLLs.
  double mean_nll_from(const window_inputs& s, std::vector<double>* per_window = nullptr,
                       std::vector<std::vector<double>>* per_token = nullptr) {
    const auto& windows = *s.windows;
    double sum = 0.0;
    long long count = 0;
    if (per_window) per_window->clear();
    if (per_token) per_token->assign(windows.size(), {});
    for (std::size_t w = 0; w < windows.size(); ++w) {
      const tensor hidden = final_hidden_from(s, w);
      // summed per window, then over windows, in the order of evaluate_perplexity: the dev objective equals the
      // mean_nll that `qroar eval` reports for the same windows, bit for bit
      double window_sum = 0.0;
      auto nll = detail::nll_from_hidden(work_, hidden, windows[w], o_.threads);
      for (double v : nll) window_sum += v;
      if (per_token) (*per_token)[w] = std::move(nll);
      sum += window_sum;
      if (per_window)
        per_window->push_back(windows[w].size() > 1 ? window_sum / static_cast<double>(windows[w].size() - 1)
                                                    : std::numeric_limits<double>::quiet_NaN());
      count += static_cast<long long>(windows[w].size()) - 1;
    }
    return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
  }

  // ||att - ref||^2 / ||ref||^2, one term of the layer-local objective.
  static double relative_attention_error(const tensor& ref, const tensor& att) {
    return (att - ref).squaredNorm() / std::max(1e-30, static_cast<double>(ref.squaredNorm()));
  }

  const llama_model& fp_;
  const search_options& o_;
  const std::vector<std::vector<int>>& dev_;
  band_scales scales_;
  llama_model work_;
  std::vector<tensor> base_wq_, base_wk_;  // quantized W_Q/W_K without scales, when not re-quantized per candidate
  forward_hooks hooks_;
  bool requantize_ = false;
  rope_table table_;
  window_inputs dev_set_, validation_set_, short_set_;
  // Layer-local objective, per dev window: the normed input of attention_inputs_layer_, its V (after the hook),
  // and its q/k projections with the weights proj_wq_/proj_wk_.
  std::vector<tensor> normed_, values_, q_proj_, k_proj_;
  tensor proj_wq_, proj_wk_;
  changed_weights changed_q_, changed_k_;
  int attention_inputs_layer_ = -1, attention_inputs_version_ = -1;
  std::vector<std::vector<tensor>> reference_att_;
  std::vector<tensor> fp_hidden_dev_;  // kl_fp: full_precision_hidden of the dev windows
  int evaluations_ = 0;
};

}  // namespace detail

// The variants `variant = auto` searches under a quantizer, and why (docs/method.md, "Variants"):
//   - symmetric scaling a no-op (every weight quantizer with per-row or in-row groups, no q/k-side KV or
//     activation quantization: Q(g w) = g Q(w), so W_Q g and W_K / g give the same quantized logits):
//     query_only only. The independent variant would search its balance s (the no-op symmetric direction) and
//     its temperature t = the query-only factor, so it adds nothing but evaluations.
//   - otherwise (key-cache or activation quantization breaks the equivariance): symmetric (keeps the
//     full-precision function: repairs quantization only) and independent (balance + temperature per band).
// `force_futile` keeps the symmetric candidate even when it is a no-op.
inline std::vector<scale_variant> auto_variant_candidates(const equivariance_report& eq, bool force_futile,
                                                          std::string* reason = nullptr) {
  if (eq.symmetric_is_noop() && !force_futile) {
    if (reason)
      *reason = "symmetric scaling is a no-op under this quantizer (" + eq.weights_reason +
                "), and the independent variant reduces to its temperature, the query-only factor: query_only only";
    return {scale_variant::query_only};
  }
  if (reason)
    *reason = "symmetric scaling can act under this quantizer: symmetric (keeps the full-precision function) and "
              "independent (balance and temperature) searched, the one with the lower validation NLL kept (dev "
              "objective without validation windows; ties keep symmetric)";
  return {scale_variant::symmetric, scale_variant::independent};
}

namespace detail {
inline search_result search_one_variant(const llama_model& model, const std::vector<std::vector<int>>& dev_windows,
                                        const search_options& o);
}  // namespace detail

// Mean NLL of `windows` on the full-precision `model` with band scales `s` folded into W_Q/W_K, run under `scaling`
// (each window at positions 0..n-1): window_nll summed per window, then over windows, as evaluate_perplexity does.
inline double full_precision_nll(const llama_model& model, const band_scales& s, const rope_scaling& scaling,
                                 const std::vector<std::vector<int>>& windows, int threads = 0) {
  llama_model m = model;
  if (!s.is_identity()) apply_band_scales(m, s);
  int longest = 0;
  for (const auto& w : windows) longest = std::max(longest, static_cast<int>(w.size()));
  const auto table = rope_table::for_positions(m.config.rope_geometry(), scaling, std::max(longest, 1));
  double sum = 0.0;
  long long count = 0;
  for (const auto& w : windows) {
    double window_sum = 0.0;
    for (double v : window_nll(m, w, table, threads)) window_sum += v;
    sum += window_sum;
    count += static_cast<long long>(w.size()) - 1;
  }
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

// The control of a finished search (search_control): the full-precision model without and with r.scales on the
// validation windows, else the dev windows; the quantized numbers are the search's own (validation NLL, or the dev
// objective when it is dev_nll; NaN for layer_local without validation windows).
inline search_control measure_full_precision_control(const llama_model& model, const search_result& r,
                                                     const std::vector<std::vector<int>>& dev_windows,
                                                     const search_options& o) {
  search_control c;
  const bool validation = !o.validation_windows.empty();
  const auto& windows = validation ? o.validation_windows : dev_windows;
  c.windows = validation ? "validation" : "dev";
  c.fp_baseline = full_precision_nll(model, band_scales(o.bands, r.variant, o.granularity, model.config.n_layers,
                                                        model.config.n_kv_heads),
                                     o.scaling, windows, o.threads);
  c.fp_final = r.scales.is_identity() ? c.fp_baseline : full_precision_nll(model, r.scales, o.scaling, windows, o.threads);
  if (validation) {
    c.quantized_baseline = r.baseline_validation;
    c.quantized_final = r.final_validation;
  } else if (o.objective == search_objective::dev_nll) {
    c.quantized_baseline = r.baseline_objective;
    c.quantized_final = r.final_objective;
  }
  return c;
}

// Searches per-band W_Q/W_K factors for `model` (full precision) deployed with `o.quant` and `o.scaling`, on the
// dev windows (token ids, each run at positions 0..n-1; use windows longer than the trained context).
// With `o.variant` empty (auto) every candidate of auto_variant_candidates is searched in full and the one with
// the lower final validation NLL (the final dev objective when there are no validation windows) is kept: the
// result is that variant's, with `variants` listing every candidate and `evaluations` counting them all.
inline search_result search_band_scales(const llama_model& model, const std::vector<std::vector<int>>& dev_windows,
                                        const search_options& o) {
  if (o.variant) {
    auto r = detail::search_one_variant(model, dev_windows, o);
    r.variant_reason = std::string("variant ") + to_string(*o.variant) + " as asked";
    if (o.full_precision_control && !r.skipped) r.control = measure_full_precision_control(model, r, dev_windows, o);
    return r;
  }
  const auto eq = is_row_scale_equivariant(o.quant, o.bands, model.config.rope_geometry());
  std::string reason;
  const auto candidates = auto_variant_candidates(eq, o.force_futile, &reason);
  search_options oc = o;
  int done = 0, seen = 0;  // progress steps of the variants searched so far, and of the current one
  int remaining = static_cast<int>(candidates.size());
  if (o.progress)
    oc.progress = [&](const search_progress& p) {
      seen = p.evaluations;
      search_progress q = p;
      q.evaluations += done;
      q.planned = done + p.planned * remaining;  // later variants assumed to cost as much as this one
      q.best = p.best;
      o.progress(q);
    };
  search_result best;
  std::vector<variant_trial> trials;
  int evaluations = 0;
  auto score = [](const search_result& r) {
    return std::isfinite(r.final_validation) ? r.final_validation : r.final_objective;
  };
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    oc.variant = candidates[i];
    auto r = detail::search_one_variant(model, dev_windows, oc);
    evaluations += r.evaluations;
    done += seen;
    seen = 0;
    --remaining;
    trials.push_back({candidates[i], r.final_objective, r.final_validation, r.evaluations,
                      static_cast<int>(r.steps.size()), false});
    if (i == 0 || score(r) < score(best)) best = std::move(r);
  }
  for (auto& t : trials) t.chosen = t.variant == best.variant;
  best.variants = std::move(trials);
  best.evaluations = evaluations;
  best.variant_reason = "variant auto: " + reason + "; kept " + to_string(best.variant);
  if (o.full_precision_control && !best.skipped) best.control = measure_full_precision_control(model, best, dev_windows, o);
  return best;
}

namespace detail {
// One variant's search (o.variant set): the coordinate descent described above search_options.
inline search_result search_one_variant(const llama_model& model, const std::vector<std::vector<int>>& dev_windows,
                                        const search_options& o) {
  QROAR_ASSERT(o.variant.has_value(), "search_one_variant needs a variant");
  const detail::flush_denormals_scope denormals;  // detail/denormals.hpp
  const llama_config& c = model.config;
  if (dev_windows.empty()) throw invalid_argument("the search needs at least one dev window");
  for (const auto& w : dev_windows)
    if (w.size() < 2) throw invalid_argument("dev windows need at least 2 tokens");
  if (o.bands.n_pairs != c.rope_geometry().pairs())
    throw invalid_argument("the band partition covers " + std::to_string(o.bands.n_pairs) + " pairs, the model has " +
                           std::to_string(c.rope_geometry().pairs()));
  if (o.passes < 1) throw invalid_argument("the search needs at least one pass");
  if (o.refine < 0 || o.refine > 20) throw invalid_argument("refine must be 0..20 bisection steps");
  if (!o.short_window_document.empty() && o.short_window_document.size() != o.short_windows.size())
    throw invalid_argument("short_window_document names " + std::to_string(o.short_window_document.size()) +
                           " documents for " + std::to_string(o.short_windows.size()) + " short windows");
  for (const auto& w : o.short_windows)
    if (w.size() < 2) throw invalid_argument("short-context guard windows need at least 2 tokens");
  search_result r;
  r.grid = log_grid(o.grid_min, o.grid_max, o.grid_points);
  r.equivariance = is_row_scale_equivariant(o.quant, o.bands, c.rope_geometry());
  r.variant = *o.variant;
  r.scales = band_scales(o.bands, *o.variant, o.granularity, c.n_layers, c.n_kv_heads);
  if (o.variant == scale_variant::symmetric && r.equivariance.symmetric_is_noop() && !o.force_futile) {
    r.skipped = true;
    r.message = "skipped the symmetric search: " + r.equivariance.summary();
    return r;
  }
  detail::search_state st(model, o, dev_windows);
  const int nb = static_cast<int>(o.bands.size());

  // Interpolation Pressure on the quantized model (first dev window) orders the bands. The layer-local objective
  // captures that window in the same pass that measures its baseline.
  const bool layer_local = o.objective == search_objective::layer_local;
  std::vector<layer_capture> cap;
  const double layer_local_baseline = layer_local ? st.reference_and_baseline(cap) : 0.0;
  if (!layer_local) cap = capture_attention(st.quantized(), dev_windows.front(), st.table(), &st.hooks(), o.threads);
  std::vector<std::vector<int>> band_order_per_layer(static_cast<std::size_t>(c.n_layers));
  {
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
  int per_band = static_cast<int>(r.grid.size()) - 1;
  if (o.strategy == grid_strategy::coarse_to_fine) {  // an upper bound: coarse points + 2 neighbours
    const int i0 = nearest_grid_index(r.grid, 1.0), m = static_cast<int>(r.grid.size());
    const int coarse = i0 / 2 + (m - 1 - i0) / 2;
    per_band = std::min(per_band, coarse + 2);
  }
  // log spacing of the grid (before 1 was added): the first refinement step's half-width is half of it
  const double log_spacing = o.grid_points > 1 ? std::log(o.grid_max / o.grid_min) / (o.grid_points - 1) : 0.0;
  const int refine_steps = log_spacing > 0.0 ? o.refine : 0;
  per_band += 2 * refine_steps;
  prog.planned = o.passes * r.scales.units() * nb * (o.variant == scale_variant::independent && !balance_futile ? 2 : 1) *
                 per_band;
  prog.stage = "search";

  st.cache_inputs(0);
  r.baseline_objective = layer_local ? layer_local_baseline : st.dev_objective(0, true);
  double current = r.baseline_objective;
  std::vector<double> current_window_nll, candidate_window_nll;  // per validation window
  std::vector<std::vector<double>> current_token_nll, candidate_token_nll;  // per validation window and token
  const bool noise_margin = o.validation == validation_rule::each_window && o.validation_noise_z > 0.0;
  if (o.validation_noise_z < 0.0 || !std::isfinite(o.validation_noise_z))
    throw invalid_argument("validation_noise_z must be finite and >= 0");
  if (check_validation)
    r.baseline_validation = r.final_validation =
        st.validation_nll(0, &current_window_nll, noise_margin ? &current_token_nll : nullptr);
  // Short-context NLL per document: the token-weighted mean of its short windows' per-window means.
  std::vector<double> short_window_nll;
  auto short_by_document = [&](const std::vector<double>& per_window) {
    std::vector<double> sum, count;
    for (std::size_t w = 0; w < per_window.size(); ++w) {
      const auto d = o.short_window_document.empty() ? w : static_cast<std::size_t>(o.short_window_document[w]);
      if (d >= sum.size()) sum.resize(d + 1, 0.0), count.resize(d + 1, 0.0);
      const auto n = static_cast<double>(o.short_windows[w].size() - 1);
      sum[d] += per_window[w] * n;
      count[d] += n;
    }
    for (std::size_t d = 0; d < sum.size(); ++d) sum[d] = count[d] > 0 ? sum[d] / count[d] : 0.0;
    return sum;
  };
  std::vector<double> baseline_short_document;
  if (check_short) {
    r.baseline_short = r.final_short = st.short_nll(0, &short_window_nll);
    baseline_short_document = short_by_document(short_window_nll);
  }
  double current_validation = r.baseline_validation;

  // The layer-local objective of a per-layer or per-head unit is its own layer's error: evaluated once when the
  // search reaches the layer, then kept per layer. Every other objective is one function of all the scales, so
  // `current` carries over from unit to unit (evaluating it again from the new cached inputs gives the same bits).
  std::vector<double> layer_objective(static_cast<std::size_t>(c.n_layers), std::numeric_limits<double>::quiet_NaN());
  int objective_layer = -1;
  for (int pass = 0; pass < o.passes; ++pass)
    for (int unit = 0; unit < r.scales.units(); ++unit) {
      const int first_layer = o.granularity == scale_granularity::global ? 0 : layer_of_unit(unit);
      st.cache_inputs(first_layer);
      if (st.layer_only() && first_layer != objective_layer) {
        current = st.dev_objective(first_layer);
        objective_layer = first_layer;
      }
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
          auto evaluate = [&](double f) {
            set(f);
            const double obj = st.dev_objective(first_layer);
            tried.emplace_back(obj, f);
            r.steps.push_back({pass, unit, band, which, f, obj, false, ""});
            ++prog.evaluations;
            prog.best = std::min(current, obj);
            if (o.progress) o.progress(prog);
          };
          if (o.strategy == grid_strategy::exhaustive) {
            for (double f : r.grid)
              if (f != keep) evaluate(f);
          } else {
            // coarse: every second grid point counted from the current factor's; fine: the two neighbours of the
            // best point so far (the current factor included)
            const int i0 = nearest_grid_index(r.grid, keep);
            const int m = static_cast<int>(r.grid.size());
            std::vector<bool> done(static_cast<std::size_t>(m), false);
            done[static_cast<std::size_t>(i0)] = true;
            for (int i = 0; i < m; ++i)
              if (i != i0 && (i - i0) % 2 == 0) {
                evaluate(r.grid[static_cast<std::size_t>(i)]);
                done[static_cast<std::size_t>(i)] = true;
              }
            int b = i0;
            double best = current;
            for (const auto& [obj, f] : tried)
              if (obj < best) best = obj, b = nearest_grid_index(r.grid, f);
            for (int i : {b - 1, b + 1})
              if (i >= 0 && i < m && !done[static_cast<std::size_t>(i)]) evaluate(r.grid[static_cast<std::size_t>(i)]);
          }
          // refinement: bisect around the best factor so far (the current one when no candidate beat it)
          double best_obj = current, best_f = keep;
          for (const auto& [obj, f] : tried)
            if (obj < best_obj) best_obj = obj, best_f = f;
          for (int k = 1; k <= refine_steps; ++k) {
            const double h = log_spacing / std::ldexp(1.0, k);
            const double center = best_f;
            for (double f : {center * std::exp(-h), center * std::exp(h)}) {
              if (f < o.grid_min * (1 - 1e-12) || f > o.grid_max * (1 + 1e-12)) continue;
              evaluate(f);
              if (tried.back().first < best_obj) best_obj = tried.back().first, best_f = f;
            }
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
              val = st.validation_nll(first_layer, &candidate_window_nll, noise_margin ? &candidate_token_nll : nullptr);
              if (val > current_validation) note = "rejected: validation NLL rose";
              for (std::size_t w = 0; note.empty() && o.validation == validation_rule::each_window && w < candidate_window_nll.size(); ++w) {
                const double margin =
                    noise_margin ? validation_margin(candidate_token_nll[w], current_token_nll[w], o.validation_noise_z) : 0.0;
                if (candidate_window_nll[w] - current_window_nll[w] > margin)
                  note = "rejected: validation NLL rose on window " + std::to_string(w) + (noise_margin ? " beyond its noise" : "");
              }
            }
            if (note.empty() && check_short) {
              // perplexity ratio exp(NLL - NLL_baseline) - 1 against the quantized model without scales, pooled and
              // (each_window) per document
              shrt = st.short_nll(first_layer, &short_window_nll);
              if (std::exp(shrt - r.baseline_short) - 1.0 > o.short_guard) note = "rejected: short-context guard";
              if (note.empty() && o.validation == validation_rule::each_window) {
                const auto by_document = short_by_document(short_window_nll);
                for (std::size_t d = 0; note.empty() && d < by_document.size(); ++d)
                  if (std::exp(by_document[d] - baseline_short_document[d]) - 1.0 > o.short_guard)
                    note = "rejected: short-context guard on document " + std::to_string(d);
              }
            }
            for (auto& s : r.steps)
              if (s.pass == pass && s.unit == unit && s.band == band && s.which == which && s.factor == f)
                s.note = note.empty() ? "accepted" : note;
            if (note.empty()) {
              for (auto& s : r.steps)
                if (s.pass == pass && s.unit == unit && s.band == band && s.which == which && s.factor == f) s.accepted = true;
              current = obj;
              current_validation = val;
              current_window_nll = candidate_window_nll;
              current_token_nll = candidate_token_nll;
              r.final_validation = val;
              r.final_short = shrt;
              moved = true;
              break;
            }
          }
          if (!moved) set(keep);
          st.sync_projections(layer_of_unit(unit));
        }
      if (st.layer_only()) layer_objective[static_cast<std::size_t>(first_layer)] = current;
    }
  // The final objective over the whole model with the chosen scales: `current`, or for per-layer objectives the
  // mean of every layer's final error (each measured on inputs from the final scales of the layers before it).
  if (st.layer_only()) {
    r.final_objective = 0.0;
    for (int l = 0; l < c.n_layers; ++l) r.final_objective += layer_objective[static_cast<std::size_t>(l)];
    r.final_objective /= c.n_layers;
  } else {
    r.final_objective = current;
  }
  r.evaluations = st.evaluations();
  r.message = r.scales.is_identity() ? "no band factor improved the dev objective under the acceptance checks"
                                     : "found band scales";
  return r;
}
}  // namespace detail

}  // namespace v0
}  // namespace qroar
