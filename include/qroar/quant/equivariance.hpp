// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../model/forward.hpp"
#include "../rope/bands.hpp"
#include "../rope/layout.hpp"
#include "gptq.hpp"
#include "kv_cache.hpp"
#include "spec.hpp"
#include "weights.hpp"

namespace qroar {
inline namespace v0 {

// Does symmetric band scaling (W_Q rows of band B x g_B, W_K rows x 1/g_B) change what a quantizer does?
// A quantizer Q is row-scale equivariant when Q(g*x) = g*Q(x) for every g > 0 and every unit it scales
// independently. Then the symmetric variant leaves the quantized model's function unchanged (up to fp16 rounding
// of stored scales and rounding ties) and searching it is futile. (docs/method.md, docs/formulas.md §5.)
//  - Weight quantizers with scales per output row or per group inside a row (RTN channel/group, GPTQ, every ggml
//    block format) are equivariant: a band scale multiplies whole rows.
//  - Per-tensor weight scales couple rows: not equivariant.
//  - Per-token K (or q/k activation) quantization in groups of g channels is equivariant only when every group
//    holds channels of a single band (band-aligned groups); otherwise the band scales change which channel sets
//    a group's range. Per-channel K groups (over tokens) are equivariant. V is never scaled.
struct equivariance_report {
  bool weights = true, kv = true, activations = true;
  std::string weights_reason, kv_reason, activations_reason;
  bool residual_fp16 = false;  // equivariant, but stored fp16 scales round differently

  bool symmetric_is_noop() const noexcept { return weights && kv && activations; }
  std::string summary() const {
    if (symmetric_is_noop())
      return std::string("symmetric band scaling cannot change this quantizer's output") +
             (residual_fp16 ? " (except fp16 rounding of stored scales)" : "") +
             ": the symmetric variant is a no-op here; only query_only/independent scales (which change the "
             "full-precision function) can help";
    std::string s = "symmetric band scaling changes the quantization error:";
    if (!weights) s += " weights (" + weights_reason + ")";
    if (!kv) s += " kv cache (" + kv_reason + ")";
    if (!activations) s += " activations (" + activations_reason + ")";
    return s;
  }
};

namespace detail {

// Whether every group of `group_size` consecutive channels of a head holds channels of at most one band.
// Channels >= rotary_dim are never scaled and count as their own "band".
inline bool groups_band_aligned(const rope_dims& dims, const band_partition& bands, int group_size, std::string& why) {
  for (int c0 = 0; c0 < dims.head_dim; c0 += group_size) {
    std::set<int> seen;
    for (int c = c0; c < std::min(dims.head_dim, c0 + group_size); ++c) {
      const int pair = pair_of_channel(dims, c);
      seen.insert(pair < 0 ? -1 : bands.band_of(pair));
    }
    if (seen.size() > 1) {
      why = "per-token groups of " + std::to_string(group_size) + " channels (channels " + std::to_string(c0) + ".." +
            std::to_string(std::min(dims.head_dim, c0 + group_size) - 1) + " of each head, " + to_string(dims.layout) +
            " layout) span " + std::to_string(seen.size()) + " bands";
      return false;
    }
  }
  why = "per-token groups of " + std::to_string(group_size) + " channels each lie inside one band";
  return true;
}

}  // namespace detail

// The analytic answer, with its reason.
inline equivariance_report is_row_scale_equivariant(const quant_spec& spec, const band_partition& bands,
                                                     const rope_dims& dims) {
  equivariance_report r;
  const auto& w = spec.weights;
  switch (w.method) {
    case weight_method::none:
      r.weights_reason = "weights in full precision";
      break;
    case weight_method::rtn:
    case weight_method::gptq:
      if (w.method == weight_method::rtn && w.granularity == weight_granularity::per_tensor) {
        // Equivariant only when every row gets the same factor: one band and no unrotated channels.
        r.weights = bands.size() == 1 && dims.rotary() == dims.head_dim;
        r.weights_reason = r.weights ? "one scale per tensor, but a single band scales every row alike"
                                     : "one scale per tensor couples rows of different bands";
      } else {
        r.weights_reason = std::string(w.method == weight_method::rtn ? "RTN" : "GPTQ") +
                           " scales are per output row or per group inside a row: Q(g*w) = g*Q(w)";
        if (w.method == weight_method::gptq)
          r.weights_reason += " (the Hessian depends only on the inputs and rows are independent)";
        r.residual_fp16 = w.fp16_scales;
      }
      break;
    case weight_method::ggml:
      r.weights_reason = std::string("ggml ") + to_string(w.ggml) +
                         " blocks lie inside one row and scale with it (fp16 block scales round)";
      r.residual_fp16 = true;
      break;
  }
  auto kv_part = [&](const kv_quant_spec& kv, int scaled_bits, bool& out, std::string& why, const char* what) {
    if (scaled_bits <= 0) {
      why = std::string(what) + " not quantized";
      return;
    }
    if (kv.granularity == kv_granularity::channel) {
      why = std::string(what) + " quantized per channel: a pair's two channels share its band scale";
      return;
    }
    std::string reason;
    out = detail::groups_band_aligned(dims, bands, kv.group_size, reason);
    why = std::string(what) + ": " + reason;
  };
  kv_part(spec.kv, spec.kv.key_bits, r.kv, r.kv_reason, "keys");
  if (spec.kv.key_bits <= 0 && spec.kv.value_bits > 0) r.kv_reason = "only values quantized (V is never scaled)";
  const int act_bits = std::max(spec.activations.key_bits, spec.activations.value_bits);
  kv_part(spec.activations, act_bits, r.activations, r.activations_reason, "q/k activations");
  return r;
}

// Empirical probe: quantize with and without random symmetric band scales and compare Q(g x)/g with Q(x). The
// measure is the relative change ||Q(gx)/g - Q(x)|| / ||Q(x) - x||: how much of the quantization error the scaling
// moves. The structural probe uses powers of two g = 2^k, k in {-2,-1,1,2} (binary16/32 scale rounding is then
// exact, docs/formulas.md §5.2), so an equivariant quantizer gives exactly 0 and a non-equivariant one order one. The
// fp16 residual is measured separately, at the model's own weight magnitudes, with g log-uniform in [1/2, 2]: a stored
// scale that moves by up to 2^-11 flips the codes of values within that distance of a rounding boundary (a few
// percent of the error for 8-bit codes), and scales below 2^-14 are fp16 subnormals with even less relative
// precision. The structural probe first multiplies each matrix by a power of two that brings max|w| near 2^10
// (exact in binary floating point), so that every stored fp16 scale is a normal number.
struct equivariance_probe {
  double weights_change = 0.0;  // over W_Q and W_K of every layer, g = 2^k
  double kv_change = 0.0;       // over the keys (and q/k activations) of a short window, g = 2^k
  double weights_fp16_residual = 0.0;  // as weights_change with non-power-of-two g
  // Float arithmetic is exact under power-of-two scaling, so anything above rounding noise is structural.
  static constexpr double equivariant_threshold = 1e-4;
  bool weights_equivariant() const noexcept { return weights_change <= equivariant_threshold; }
  bool kv_equivariant() const noexcept { return kv_change <= equivariant_threshold; }
};

namespace detail {

inline equivariance_probe probe_with_scales(const llama_model& m, const quant_spec& spec, const band_partition& bands,
                                            const std::vector<int>& tokens, const std::vector<float>& g,
                                            bool normalize) {
  const llama_config& c = m.config;
  const rope_dims dims = c.rope_geometry();
  // per-channel factor of one head: g_B on rotary channels of band B, 1 on non-rotary channels
  std::vector<float> channel_scale(static_cast<std::size_t>(c.head_size()), 1.0f);
  for (int ch = 0; ch < c.head_size(); ++ch) {
    const int pair = pair_of_channel(dims, ch);
    if (pair >= 0) channel_scale[static_cast<std::size_t>(ch)] = g[static_cast<std::size_t>(bands.band_of(pair))];
  }
  auto scale_rows = [&](tensor& w, bool inverse) {
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      const float s = channel_scale[static_cast<std::size_t>(r % c.head_size())];
      w.row(r) *= inverse ? 1.0f / s : s;
    }
  };
  auto quantize_matrix = [&](tensor& w) {
    if (spec.weights.method == weight_method::gptq) {
      // GPTQ's homogeneity does not depend on the Hessian: use a fixed well-conditioned synthetic one.
      Eigen::MatrixXd h = Eigen::MatrixXd::Identity(w.cols(), w.cols());
      for (Eigen::Index i = 0; i + 1 < w.cols(); ++i) h(i, i + 1) = h(i + 1, i) = 0.3;
      gptq_quantize_matrix(w, h, spec.weights);
    } else if (spec.weights.method == weight_method::rtn) {
      rtn_quantize(w, spec.weights);
    } else if (spec.weights.method == weight_method::ggml) {
      ggml_fake_quantize(w, spec.weights.ggml);
    }
  };
  equivariance_probe p;
  if (spec.quantizes_weights()) {
    double moved = 0.0, err = 0.0;
    for (const auto& L : m.layers)
      for (int which = 0; which < 2; ++which) {
        tensor w = which == 0 ? L.wq : L.wk;
        if (normalize) {  // a power of two puts max|w| near 2^10: exact, keeps every fp16 block scale normal
          const float amax = w.cwiseAbs().maxCoeff();
          if (amax > 0.0f) w *= static_cast<float>(std::ldexp(1.0, 10 - static_cast<int>(std::lround(std::log2(amax)))));
        }
        tensor plain = w, scaled = w;
        quantize_matrix(plain);
        scale_rows(scaled, which == 1);
        quantize_matrix(scaled);
        scale_rows(scaled, which == 0);  // undo
        moved += (scaled - plain).squaredNorm();
        err += (plain - w).squaredNorm();
      }
    p.weights_change = err > 0.0 ? std::sqrt(moved / err) : 0.0;
  }
  // Keys and q/k activations: quantize the model's own post/pre-RoPE q and k of a short window.
  const int key_bits = spec.kv.key_bits;
  const int act_q = spec.activations.key_bits, act_k = spec.activations.value_bits;
  if ((key_bits > 0 || act_q > 0 || act_k > 0) && !tokens.empty()) {
    tensor q_rows, k_rows;
    forward_hooks hooks;
    hooks.last_layer = 0;
    const bool post = key_bits > 0 ? spec.kv.post_rope : spec.activations.post_rope;
    (post ? hooks.q_post_rope : hooks.q_pre_rope) = [&](int, int, tensor& x) { q_rows = x; };
    (post ? hooks.k_post_rope : hooks.k_pre_rope) = [&](int, int, tensor& x) { k_rows = x; };
    const auto table = rope_table::for_positions(dims, rope_scaling::none(), static_cast<int>(tokens.size()));
    kv_cache cache(c, static_cast<int>(tokens.size()));
    forward_hidden(m, tokens, cache, table, 1, &hooks);
    double moved = 0.0, err = 0.0;
    auto probe = [&](const tensor& x, bool inverse, const kv_quant_spec& kv, int bits) {
      if (bits <= 0) return;
      auto quant = [&](tensor& t) {
        if (kv.granularity == kv_granularity::token) quantize_per_token(t, c.head_size(), kv.group_size, bits, kv.symmetric);
        else quantize_per_channel(t, 0, kv.group_size, bits, kv.symmetric);
      };
      tensor plain = x, scaled = x;
      quant(plain);
      for (Eigen::Index col = 0; col < scaled.cols(); ++col) {
        const float s = channel_scale[static_cast<std::size_t>(col % c.head_size())];
        scaled.col(col) *= inverse ? 1.0f / s : s;
      }
      quant(scaled);
      for (Eigen::Index col = 0; col < scaled.cols(); ++col) {
        const float s = channel_scale[static_cast<std::size_t>(col % c.head_size())];
        scaled.col(col) *= inverse ? s : 1.0f / s;
      }
      moved += (scaled - plain).squaredNorm();
      err += (plain - x).squaredNorm();
    };
    probe(k_rows, true, spec.kv, key_bits);
    probe(q_rows, false, spec.activations, act_q);
    probe(k_rows, true, spec.activations, act_k);
    p.kv_change = err > 0.0 ? std::sqrt(moved / err) : 0.0;
  }
  return p;
}

}  // namespace detail

inline equivariance_probe probe_row_scale_equivariance(const llama_model& m, const quant_spec& spec,
                                                       const band_partition& bands, const std::vector<int>& tokens,
                                                       unsigned seed = 1) {
  std::mt19937 rng(seed);
  const int exponents[] = {-2, -1, 1, 2};
  std::vector<float> pow2(bands.size()), smooth(bands.size());
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (std::size_t b = 0; b < bands.size(); ++b) {
    pow2[b] = static_cast<float>(std::ldexp(1.0, exponents[rng() % 4]));
    smooth[b] = static_cast<float>(std::exp2(u(rng)));
  }
  auto p = detail::probe_with_scales(m, spec, bands, tokens, pow2, true);
  if (spec.quantizes_weights()) {
    quant_spec weights_only = spec;
    weights_only.kv = {};
    weights_only.activations = {};
    p.weights_fp16_residual = detail::probe_with_scales(m, weights_only, bands, {}, smooth, false).weights_change;
  }
  return p;
}

}  // namespace v0
}  // namespace qroar
