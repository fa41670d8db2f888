// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "../rope/bands.hpp"
#include "../rope/layout.hpp"
#include "../rope/scaling.hpp"

namespace qroar {
inline namespace v0 {

// Which factors a band gets (docs/method.md):
//   symmetric:    W_Q rows x g, W_K rows x 1/g. Full-precision logits unchanged (q.k of each pair is invariant).
//   query_only:   W_Q rows x g. Band B's logit contribution x g: a per-band attention temperature.
//   independent:  W_Q rows x g_q, W_K rows x g_k: contribution x g_q*g_k, and the split between Q and K moves
//                 quantization error between them.
enum class scale_variant { symmetric, query_only, independent };
// One set of band factors for the whole model, one per layer, or one per layer and KV head (a K factor acts on
// every query head of its GQA group, so per-head factors are indexed by KV head: docs/formulas.md §1.5).
enum class scale_granularity { global, per_layer, per_layer_kv_head };

inline const char* to_string(scale_variant v) noexcept {
  return v == scale_variant::symmetric ? "symmetric" : v == scale_variant::query_only ? "query_only" : "independent";
}
inline const char* to_string(scale_granularity g) noexcept {
  return g == scale_granularity::global ? "global" : g == scale_granularity::per_layer ? "per_layer" : "per_layer_kv_head";
}
inline scale_variant scale_variant_from_string(const std::string& s) {
  if (s == "symmetric") return scale_variant::symmetric;
  if (s == "query_only" || s == "query-only") return scale_variant::query_only;
  if (s == "independent") return scale_variant::independent;
  throw invalid_argument("unknown scale variant '" + s + "' (expected symmetric, query_only or independent)");
}
inline scale_granularity scale_granularity_from_string(const std::string& s) {
  if (s == "global") return scale_granularity::global;
  if (s == "per_layer" || s == "per-layer" || s == "layer") return scale_granularity::per_layer;
  if (s == "per_layer_kv_head" || s == "per-layer-kv-head" || s == "head") return scale_granularity::per_layer_kv_head;
  throw invalid_argument("unknown scale granularity '" + s + "' (expected global, per_layer or per_layer_kv_head)");
}

// Per-band factors for W_Q and W_K rows. Factors refer to RoPE pairs, not rows, so one set applies to the same
// model in any storage layout (interleaved or half-split rows are resolved when applied).
struct band_scales {
  band_partition bands;
  scale_variant variant = scale_variant::symmetric;
  scale_granularity granularity = scale_granularity::global;
  int n_layers = 0;
  int n_kv_heads = 0;
  std::vector<double> query;  // (unit, band), unit = 0 (global), layer, or layer * n_kv_heads + kv_head
  std::vector<double> key;

  band_scales() = default;
  band_scales(band_partition b, scale_variant v, scale_granularity g, int layers, int kv_heads)
      : bands(std::move(b)), variant(v), granularity(g), n_layers(layers), n_kv_heads(kv_heads) {
    query.assign(static_cast<std::size_t>(units()) * bands.size(), 1.0);
    key = query;
  }

  int units() const noexcept {
    return granularity == scale_granularity::global ? 1
           : granularity == scale_granularity::per_layer ? n_layers
                                                         : n_layers * n_kv_heads;
  }
  int unit_of(int layer, int kv_head) const noexcept {
    return granularity == scale_granularity::global ? 0
           : granularity == scale_granularity::per_layer ? layer
                                                         : layer * n_kv_heads + kv_head;
  }
  std::size_t index(int unit, int band_index) const noexcept {
    return static_cast<std::size_t>(unit) * bands.size() + static_cast<std::size_t>(band_index);
  }
  double query_factor(int layer, int kv_head, int band_index) const { return query[index(unit_of(layer, kv_head), band_index)]; }
  double key_factor(int layer, int kv_head, int band_index) const { return key[index(unit_of(layer, kv_head), band_index)]; }

  // Sets the factor of one (unit, band) following the variant: symmetric ties key = 1/query, query_only keeps 1.
  void set(int unit, int band_index, double q, double k = 1.0) {
    if (!(q > 0.0) || !std::isfinite(q)) throw invalid_argument("band scales must be positive and finite");
    query[index(unit, band_index)] = q;
    key[index(unit, band_index)] = variant == scale_variant::symmetric ? 1.0 / q
                                   : variant == scale_variant::query_only ? 1.0
                                                                          : k;
  }

  bool is_identity() const noexcept {
    for (std::size_t i = 0; i < query.size(); ++i)
      if (query[i] != 1.0 || key[i] != 1.0) return false;
    return true;
  }

  void validate(const llama_config& c) const {
    if (n_layers != c.n_layers || n_kv_heads != c.n_kv_heads)
      throw invalid_argument("band scales were made for " + std::to_string(n_layers) + " layers and " +
                             std::to_string(n_kv_heads) + " KV heads, the model has " + std::to_string(c.n_layers) +
                             " and " + std::to_string(c.n_kv_heads));
    if (bands.n_pairs != c.rope_geometry().pairs())
      throw invalid_argument("band scales cover " + std::to_string(bands.n_pairs) + " RoPE pairs, the model has " +
                             std::to_string(c.rope_geometry().pairs()));
    const auto n = static_cast<std::size_t>(units()) * bands.size();
    if (query.size() != n || key.size() != n) throw invalid_argument("band scales: wrong number of factors");
    for (std::size_t i = 0; i < n; ++i)
      if (!(query[i] > 0.0) || !(key[i] > 0.0) || !std::isfinite(query[i]) || !std::isfinite(key[i]))
        throw invalid_argument("band scales must be positive and finite");
  }
};

// Per-row factors of W_Q (n_heads*head_dim) and W_K (n_kv_heads*head_dim) of one layer. Rows of channels that are
// not rotated get 1. Layout- and GQA-aware: query head h uses the factors of KV head h / n_rep.
inline void band_row_factors(const band_scales& s, const llama_config& c, int layer, std::vector<float>& q_rows,
                             std::vector<float>& k_rows) {
  const rope_dims dims = c.rope_geometry();
  const int hd = c.head_size();
  q_rows.assign(static_cast<std::size_t>(c.q_dim()), 1.0f);
  k_rows.assign(static_cast<std::size_t>(c.kv_dim()), 1.0f);
  for (int j = 0; j < dims.pairs(); ++j) {
    const int b = s.bands.band_of(j);
    const auto ch = pair_channels(dims, j);
    for (int h = 0; h < c.n_heads; ++h) {
      const int kvh = kv_head_of(h, c.n_heads, c.n_kv_heads);
      const auto f = static_cast<float>(s.query_factor(layer, kvh, b));
      q_rows[static_cast<std::size_t>(h * hd + ch[0])] = f;
      q_rows[static_cast<std::size_t>(h * hd + ch[1])] = f;
    }
    for (int kvh = 0; kvh < c.n_kv_heads; ++kvh) {
      const auto f = static_cast<float>(s.key_factor(layer, kvh, b));
      k_rows[static_cast<std::size_t>(kvh * hd + ch[0])] = f;
      k_rows[static_cast<std::size_t>(kvh * hd + ch[1])] = f;
    }
  }
}

// Folds the factors into W_Q / W_K rows of every layer (full-precision weights; quantize afterwards).
inline void apply_band_scales(llama_model& m, const band_scales& s) {
  s.validate(m.config);
  std::vector<float> qf, kf;
  for (int l = 0; l < m.config.n_layers; ++l) {
    band_row_factors(s, m.config, l, qf, kf);
    auto& L = m.layers[static_cast<std::size_t>(l)];
    for (Eigen::Index r = 0; r < L.wq.rows(); ++r) L.wq.row(r) *= qf[static_cast<std::size_t>(r)];
    for (Eigen::Index r = 0; r < L.wk.rows(); ++r) L.wk.row(r) *= kf[static_cast<std::size_t>(r)];
  }
}

}  // namespace v0
}  // namespace qroar
