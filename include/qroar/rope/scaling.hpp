// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../error.hpp"
#include "layout.hpp"

namespace qroar {
inline namespace v0 {

// Position-interpolation schemes. Each gives per-pair inverse frequencies theta'_j and an attention factor a
// that multiplies cos and sin (so logits scale by a^2). Formulas: ../../../docs/rope.md and, per type, below.
enum class rope_type {
  none,       // "default": theta_j = b^(-2j/d)
  linear,     // position interpolation (Chen et al. 2023): theta_j / s
  ntk,        // static NTK-aware: base b' = b * s^(d/(d-2))
  dynamic,    // HF dynamic NTK: b' = b * ((s*T/Lmax) - (s-1))^(d/(d-2)), T = max(seq_len, Lmax)
  yarn,       // YaRN, Hugging Face semantics (modeling_rope_utils._compute_yarn_parameters)
  yarn_ggml,  // YaRN, ggml semantics (ggml rope_yarn: freq_scale, ext_factor, attn_factor, built-in mscale)
  llama3,     // Llama 3.1 piecewise wavelength scaling
  longrope,   // LongRoPE / Phi-3: per-pair divisors, short or long list by sequence length
};

inline const char* to_string(rope_type t) noexcept {
  switch (t) {
    case rope_type::none: return "default";
    case rope_type::linear: return "linear";
    case rope_type::ntk: return "ntk";
    case rope_type::dynamic: return "dynamic";
    case rope_type::yarn: return "yarn";
    case rope_type::yarn_ggml: return "yarn-ggml";
    case rope_type::llama3: return "llama3";
    case rope_type::longrope: return "longrope";
  }
  return "?";
}

inline rope_type rope_type_from_string(const std::string& name) {
  if (name == "default" || name == "none") return rope_type::none;
  if (name == "linear") return rope_type::linear;
  if (name == "ntk") return rope_type::ntk;
  if (name == "dynamic") return rope_type::dynamic;
  if (name == "yarn") return rope_type::yarn;
  if (name == "yarn-ggml" || name == "yarn_ggml") return rope_type::yarn_ggml;
  if (name == "llama3") return rope_type::llama3;
  if (name == "longrope" || name == "su") return rope_type::longrope;
  throw invalid_argument("unknown RoPE scaling type '" + name +
                         "' (expected one of: default linear ntk dynamic yarn yarn-ggml llama3 longrope)");
}

// One value type for every scheme. Fields a scheme does not use are ignored by it.
struct rope_scaling {
  rope_type type = rope_type::none;
  double factor = 1.0;  // s: context extension factor (ggml freq_scale = 1/s)
  // L0: context the model was trained at (HF original_max_position_embeddings, ggml n_ctx_orig).
  int original_ctx = 0;
  // Lmax of HF dynamic NTK (max_position_embeddings); 0 means original_ctx.
  int max_position_embeddings = 0;

  // YaRN (both semantics). HF sets these with `or`, so 0 means the default.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;  // HF: floor/ceil the correction range. ggml always truncates.
  // Context entering the YaRN correction range; 0 means original_ctx (newer HF, reference YaRN, ggml).
  // Older HF (around v4.44) used max_position_embeddings: set it here to reproduce those.
  int correction_ctx = 0;
  std::optional<double> attention_factor;  // explicit HF attention_factor (yarn, longrope)
  double mscale = 0.0;                     // HF yarn mscale (0 = unset)
  double mscale_all_dim = 0.0;             // HF yarn mscale_all_dim (0 = unset)
  double ext_factor = 1.0;                 // ggml: weight of the extrapolation mix (0 = pure linear)
  double attn_factor = 1.0;                // ggml: extra multiplier on cos and sin

  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;

  // longrope: per-pair divisors f_j, d/2 each
  std::vector<double> short_factor;
  std::vector<double> long_factor;

  static rope_scaling none() { return {}; }
  static rope_scaling linear(double s) { return make(rope_type::linear, s, 0); }
  static rope_scaling ntk(double s) { return make(rope_type::ntk, s, 0); }
  static rope_scaling dynamic(double s, int max_position_embeddings) {
    auto r = make(rope_type::dynamic, s, max_position_embeddings);
    r.max_position_embeddings = max_position_embeddings;
    return r;
  }
  static rope_scaling yarn(double s, int original_ctx) { return make(rope_type::yarn, s, original_ctx); }
  static rope_scaling yarn_ggml(double s, int original_ctx) { return make(rope_type::yarn_ggml, s, original_ctx); }
  static rope_scaling llama3(double s, int original_ctx, double low = 1.0, double high = 4.0) {
    auto r = make(rope_type::llama3, s, original_ctx);
    r.low_freq_factor = low;
    r.high_freq_factor = high;
    return r;
  }
  static rope_scaling longrope(std::vector<double> short_f, std::vector<double> long_f, double s, int original_ctx) {
    auto r = make(rope_type::longrope, s, original_ctx);
    r.short_factor = std::move(short_f);
    r.long_factor = std::move(long_f);
    return r;
  }

  int lmax() const noexcept { return max_position_embeddings > 0 ? max_position_embeddings : original_ctx; }

  // Throws invalid_argument for parameters no implementation accepts.
  void validate(const rope_dims& dims) const;

 private:
  static rope_scaling make(rope_type t, double s, int l0) {
    rope_scaling r;
    r.type = t;
    r.factor = s;
    r.original_ctx = l0;
    return r;
  }
};

namespace detail {

// HF get_mscale / YaRN paper eq. (22): 0.1 * m * ln(s) + 1 for s > 1, else 1.
inline double yarn_get_mscale(double s, double m = 1.0) { return s <= 1.0 ? 1.0 : 0.1 * m * std::log(s) + 1.0; }

// corr(r) = d * ln(L / (2*pi*r)) / (2 * ln b): the pair index at which pair j completes r rotations over L tokens.
// HF _compute_yarn_parameters find_correction_dim; ggml ggml_rope_yarn_corr_dim.
inline double yarn_correction_dim(double rotations, int d, double base, double ctx) {
  const double pi = 3.14159265358979323846;
  return d * std::log(ctx / (rotations * 2.0 * pi)) / (2.0 * std::log(base));
}

inline std::vector<double> default_inverse_frequencies(int d, double base) {
  std::vector<double> inv(static_cast<std::size_t>(d / 2));
  for (int j = 0; j < d / 2; ++j) inv[static_cast<std::size_t>(j)] = 1.0 / std::pow(base, (2.0 * j) / d);
  return inv;
}

}  // namespace detail

inline void rope_scaling::validate(const rope_dims& dims) const {
  dims.validate();
  const std::string name = to_string(type);
  if (type == rope_type::none) return;
  if (!(factor > 0.0) || !std::isfinite(factor))
    throw invalid_argument("RoPE scaling '" + name + "': factor must be a positive finite number, got " +
                           std::to_string(factor));
  const bool needs_l0 = type == rope_type::yarn || type == rope_type::yarn_ggml || type == rope_type::llama3 ||
                        type == rope_type::longrope || type == rope_type::dynamic;
  if (needs_l0 && lmax() <= 0)
    throw invalid_argument("RoPE scaling '" + name + "' needs the original (trained) context length");
  if (type == rope_type::ntk && dims.rotary() <= 2)
    throw invalid_argument("RoPE scaling 'ntk' needs rotary_dim > 2 (exponent d/(d-2))");
  if (type == rope_type::dynamic && dims.rotary() <= 2)
    throw invalid_argument("RoPE scaling 'dynamic' needs rotary_dim > 2 (exponent d/(d-2))");
  if (type == rope_type::yarn || type == rope_type::yarn_ggml) {
    if (!(beta_fast > 0.0) || !(beta_slow > 0.0) || !std::isfinite(beta_fast) || !std::isfinite(beta_slow))
      throw invalid_argument("YaRN beta_fast and beta_slow must be positive and finite");
    if (!(beta_fast > beta_slow))  // the same rule as bands_by_wavelength: beta_fast bounds the high-frequency side
      throw invalid_argument("YaRN needs beta_fast > beta_slow, got beta_fast " + std::to_string(beta_fast) +
                             " and beta_slow " + std::to_string(beta_slow));
    if (!std::isfinite(mscale) || !std::isfinite(mscale_all_dim) || !std::isfinite(ext_factor) || !std::isfinite(attn_factor))
      throw invalid_argument("YaRN mscale, mscale_all_dim, ext_factor and attn_factor must be finite");
    if (attention_factor && (!(*attention_factor > 0.0) || !std::isfinite(*attention_factor)))
      throw invalid_argument("YaRN attention_factor must be positive and finite");
  }
  if (type == rope_type::llama3) {
    if (!(high_freq_factor > low_freq_factor) || !(low_freq_factor > 0.0))
      throw invalid_argument("llama3 scaling needs 0 < low_freq_factor < high_freq_factor");
  }
  if (type == rope_type::longrope) {
    const auto n = static_cast<std::size_t>(dims.pairs());
    if (short_factor.size() != n || long_factor.size() != n)
      throw invalid_argument("longrope needs short_factor and long_factor of length rotary_dim/2 = " +
                             std::to_string(n) + ", got " + std::to_string(short_factor.size()) + " and " +
                             std::to_string(long_factor.size()));
    for (double f : short_factor)
      if (!(f > 0.0)) throw invalid_argument("longrope short_factor entries must be positive");
    for (double f : long_factor)
      if (!(f > 0.0)) throw invalid_argument("longrope long_factor entries must be positive");
  }
}

// Effective inverse frequencies theta'_j, j = 0 .. d/2-1, in double precision.
// seq_len is the current sequence length where the scheme depends on it (dynamic, longrope); 0 = not known,
// which means "within the original context".
inline std::vector<double> inverse_frequencies(const rope_scaling& sc, const rope_dims& dims, int seq_len = 0) {
  sc.validate(dims);
  const int d = dims.rotary();
  const double b = dims.base;
  const double s = sc.factor;
  std::vector<double> inv = detail::default_inverse_frequencies(d, b);
  const auto n = inv.size();
  switch (sc.type) {
    case rope_type::none:
      break;
    case rope_type::linear:  // PI: theta_j / s (Chen et al. 2023; HF _compute_linear_scaling_rope_parameters)
      for (auto& v : inv) v /= s;
      break;
    case rope_type::ntk: {  // b' = b * s^(d/(d-2)) (bloc97, "NTK-aware scaled RoPE")
      inv = detail::default_inverse_frequencies(d, b * std::pow(s, static_cast<double>(d) / (d - 2)));
      break;
    }
    case rope_type::dynamic: {  // HF _compute_dynamic_ntk_parameters
      const double lmax = sc.lmax();
      const double t = std::max<double>(seq_len, lmax);
      const double base = b * std::pow(s * t / lmax - (s - 1.0), static_cast<double>(d) / (d - 2));
      inv = detail::default_inverse_frequencies(d, base);
      break;
    }
    case rope_type::yarn: {  // HF _compute_yarn_parameters
      const double ctx = sc.correction_ctx > 0 ? sc.correction_ctx : sc.original_ctx;
      double low = detail::yarn_correction_dim(sc.beta_fast, d, b, ctx);
      double high = detail::yarn_correction_dim(sc.beta_slow, d, b, ctx);
      if (sc.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(d - 1));
      if (low == high) high += 0.001;  // prevent singularity
      for (std::size_t j = 0; j < n; ++j) {
        const double ramp = std::clamp((static_cast<double>(j) - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1.0 - ramp;
        inv[j] = (inv[j] / s) * (1.0 - extrapolation) + inv[j] * extrapolation;
      }
      break;
    }
    case rope_type::yarn_ggml: {  // ggml ggml_rope_yarn_corr_dims + rope_yarn_ramp + rope_yarn
      const double ctx = sc.correction_ctx > 0 ? sc.correction_ctx : sc.original_ctx;
      const double start = std::floor(detail::yarn_correction_dim(sc.beta_fast, d, b, ctx));
      const double end = std::ceil(detail::yarn_correction_dim(sc.beta_slow, d, b, ctx));
      const double low = std::max(0.0, start);
      const double high = std::min(static_cast<double>(d - 1), end);
      const double freq_scale = 1.0 / s;
      for (std::size_t j = 0; j < n; ++j) {
        const double y = (static_cast<double>(j) - low) / std::max(0.001, high - low);
        const double ramp = 1.0 - std::min(1.0, std::max(0.0, y));
        const double interp = freq_scale * inv[j];
        if (sc.ext_factor != 0.0) {
          const double mix = ramp * sc.ext_factor;
          inv[j] = interp * (1.0 - mix) + inv[j] * mix;
        } else {
          inv[j] = interp;
        }
      }
      break;
    }
    case rope_type::llama3: {  // HF _compute_llama3_parameters
      const double pi = 3.14159265358979323846;
      const double l0 = sc.original_ctx;
      const double low_wavelen = l0 / sc.low_freq_factor;
      const double high_wavelen = l0 / sc.high_freq_factor;
      for (auto& v : inv) {
        const double wavelen = 2.0 * pi / v;
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) {
          v /= s;
          continue;
        }
        const double smooth = (l0 / wavelen - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor);
        v = (1.0 - smooth) * v / s + smooth * v;
      }
      break;
    }
    case rope_type::longrope: {  // HF _compute_longrope_parameters: theta_j / f_j
      const auto& f = seq_len > sc.original_ctx ? sc.long_factor : sc.short_factor;
      for (std::size_t j = 0; j < n; ++j) inv[j] /= f[j];
      break;
    }
  }
  return inv;
}

// Attention factor a (cos and sin are multiplied by a, logits by a^2).
inline double attention_factor(const rope_scaling& sc, const rope_dims& dims, int seq_len = 0) {
  (void)seq_len;
  sc.validate(dims);
  switch (sc.type) {
    case rope_type::yarn:
      if (sc.attention_factor) return *sc.attention_factor;
      if (sc.mscale != 0.0 && sc.mscale_all_dim != 0.0)
        return detail::yarn_get_mscale(sc.factor, sc.mscale) / detail::yarn_get_mscale(sc.factor, sc.mscale_all_dim);
      return detail::yarn_get_mscale(sc.factor);
    case rope_type::yarn_ggml:
      // ggml rope_yarn: mscale = attn_factor, times 1 + 0.1 ln(1/freq_scale) whenever ext_factor != 0.
      return sc.attn_factor * (sc.ext_factor != 0.0 ? 1.0 + 0.1 * std::log(sc.factor) : 1.0);
    case rope_type::longrope:
      if (sc.attention_factor) return *sc.attention_factor;
      if (sc.factor <= 1.0) return 1.0;
      return std::sqrt(1.0 + std::log(sc.factor) / std::log(static_cast<double>(sc.original_ctx)));
    default:
      return 1.0;
  }
}

}  // namespace v0
}  // namespace qroar
