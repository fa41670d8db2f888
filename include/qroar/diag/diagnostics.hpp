// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "../model/forward.hpp"
#include "../rope/bands.hpp"
#include "../rope/scaling.hpp"

namespace qroar {
inline namespace v0 {

// Q-ROAR diagnostics (docs/method.md gives the definitions and their relation to the paper's verbal ones).
// All of them are computed from one forward pass of a model over a window longer than the trained context L0,
// capturing per layer the q and k that enter q.k (after RoPE and any simulated KV/activation quantization) and the
// attention output. Logits are q_m.k_n / sqrt(head_dim); sampled query positions m (evenly spaced) against every
// key n <= m.
//
//  Interpolation Pressure IP(l, B): RMS over heads and sampled (m, n) of d logit / d epsilon when the effective
//    frequencies of band B are scaled by (1 + epsilon):  d l_j / d eps = -theta'_j (m - n) (q_y k_x - q_x k_y)
//    per pair j = (x, y) of B (post-RoPE components; derivative of Re[q~ k~* e^{i theta'(m-n)}]), summed over B.
//    Large IP: the band's logits move fast with its phase, so interpolation (which moves every phase) and the
//    quantization error's rotation hit it hardest.
//  Tail Inflation Ratio TIR(l, B) = Q_p(long) / Q_p(short) for p = 99.9% and the max, of
//    - |q| and |k| pair magnitudes sqrt(x^2 + y^2) of B's pairs, tokens at positions >= L0 (long) vs < L0 (short);
//    - |l_B(m, n)|, band B's logit contribution, at distances m - n >= L0 (long) vs < L0 (short).
//  Logit error against distance: per layer, RMS of (quantized - reference) logits in distance buckets
//    [0,1), [1,2), [2,4), ... (powers of two), each model run on its own hidden states.
//  Attention-output error: per layer, ||att_quantized - att_reference||_F / ||att_reference||_F.

struct layer_capture {
  tensor q;    // (tokens, n_heads * head_dim), after RoPE and q/k activation quantization
  tensor k;    // (tokens, n_kv_heads * head_dim), after RoPE and KV quantization
  tensor att;  // (tokens, n_heads * head_dim), attention output (input of W_O)
};

// Chains `first` then `second` (either may be empty).
inline forward_hooks::block_hook chain_hooks(forward_hooks::block_hook first, forward_hooks::block_hook second) {
  if (!first) return second;
  if (!second) return first;
  return [first = std::move(first), second = std::move(second)](int l, int p, tensor& r) {
    first(l, p, r);
    second(l, p, r);
  };
}

// Runs `model` over one window at positions [0, n) and captures every layer's q, k and attention output.
// `base` (may be null) holds quantization hooks; capture happens after them.
inline std::vector<layer_capture> capture_attention(const llama_model& model, const std::vector<int>& window,
                                                    const rope_table& table, const forward_hooks* base = nullptr,
                                                    int threads = 0) {
  std::vector<layer_capture> cap(static_cast<std::size_t>(model.config.n_layers));
  forward_hooks h = base ? *base : forward_hooks{};
  h.last_layer = -1;
  // pre-RoPE quantization hooks stay where they are; capture the post-RoPE tensors as attention sees them
  h.q_post_rope = chain_hooks(h.q_post_rope, [&](int l, int, tensor& x) { cap[static_cast<std::size_t>(l)].q = x; });
  h.k_post_rope = chain_hooks(h.k_post_rope, [&](int l, int, tensor& x) { cap[static_cast<std::size_t>(l)].k = x; });
  h.attention_output =
      chain_hooks(h.attention_output, [&](int l, int, tensor& x) { cap[static_cast<std::size_t>(l)].att = x; });
  kv_cache cache(model.config, static_cast<int>(window.size()));
  forward_hidden(model, window, cache, table, threads, &h);
  return cap;
}

struct diagnostics_options {
  int original_ctx = 0;       // L0: splits short from long
  int query_samples = 64;     // query positions per window, evenly spaced over [n/query_samples, n)
  double quantile = 0.999;    // p of the TIR quantile
  int threads = 0;
};

// Per (layer, band) matrices are stored row-major: index = layer * n_bands + band.
struct band_diagnostics {
  int n_layers = 0, n_bands = 0;
  std::vector<double> interpolation_pressure;
  std::vector<double> tir_q_quantile, tir_q_max, tir_k_quantile, tir_k_max, tir_logit_quantile, tir_logit_max;

  double at(const std::vector<double>& v, int layer, int band) const {
    return v[static_cast<std::size_t>(layer * n_bands + band)];
  }
  // Layer average of a (layer, band) matrix: one value per band.
  std::vector<double> per_band(const std::vector<double>& v) const {
    std::vector<double> out(static_cast<std::size_t>(n_bands), 0.0);
    for (int l = 0; l < n_layers; ++l)
      for (int b = 0; b < n_bands; ++b) out[static_cast<std::size_t>(b)] += at(v, l, b) / n_layers;
    return out;
  }
};

namespace detail {

inline double quantile_of(std::vector<float>& v, double p) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto k = static_cast<std::size_t>(std::min<double>(static_cast<double>(v.size() - 1), std::floor(p * static_cast<double>(v.size() - 1) + 0.5)));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

inline double max_of(const std::vector<float>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  return *std::max_element(v.begin(), v.end());
}

inline std::vector<int> sampled_queries(int n, int samples) {
  std::vector<int> out;
  samples = std::max(1, std::min(samples, n));
  for (int s = 1; s <= samples; ++s) out.push_back(static_cast<int>(static_cast<long long>(n) * s / samples) - 1);
  return out;
}

}  // namespace detail

// Interpolation Pressure and Tail Inflation Ratios of one captured model.
inline band_diagnostics compute_band_diagnostics(const llama_config& c, const std::vector<layer_capture>& cap,
                                                 const band_partition& bands, const std::vector<double>& inv_freq,
                                                 const diagnostics_options& o) {
  const rope_dims dims = c.rope_geometry();
  const int hd = c.head_size(), nb = static_cast<int>(bands.size());
  const int L0 = o.original_ctx;
  band_diagnostics d;
  d.n_layers = c.n_layers;
  d.n_bands = nb;
  const auto cells = static_cast<std::size_t>(c.n_layers * nb);
  for (auto* v : {&d.interpolation_pressure, &d.tir_q_quantile, &d.tir_q_max, &d.tir_k_quantile, &d.tir_k_max,
                  &d.tir_logit_quantile, &d.tir_logit_max})
    v->assign(cells, std::numeric_limits<double>::quiet_NaN());
  const double inv_sqrt_hd = 1.0 / std::sqrt(static_cast<double>(hd));
  detail::parallel_for(c.n_layers * nb, o.threads, [&](int cell) {
    const int l = cell / nb, b = cell % nb;
    const layer_capture& lc = cap[static_cast<std::size_t>(l)];
    const auto n = static_cast<int>(lc.q.rows());
    const band& B = bands[static_cast<std::size_t>(b)];
    // pair magnitudes
    std::vector<float> q_short, q_long, k_short, k_long;
    for (int t = 0; t < n; ++t) {
      auto& qs = t < L0 ? q_short : q_long;
      auto& ks = t < L0 ? k_short : k_long;
      for (int j = B.first_pair; j <= B.last_pair; ++j) {
        const auto ch = pair_channels(dims, j);
        for (int h = 0; h < c.n_heads; ++h)
          qs.push_back(std::hypot(lc.q(t, h * hd + ch[0]), lc.q(t, h * hd + ch[1])));
        for (int h = 0; h < c.n_kv_heads; ++h)
          ks.push_back(std::hypot(lc.k(t, h * hd + ch[0]), lc.k(t, h * hd + ch[1])));
      }
    }
    // band logit contributions and their phase derivative
    std::vector<float> l_short, l_long;
    double ip_sum = 0.0;
    long long ip_count = 0;
    for (int m : detail::sampled_queries(n, o.query_samples)) {
      for (int h = 0; h < c.n_heads; ++h) {
        const int kvh = kv_head_of(h, c.n_heads, c.n_kv_heads);
        const float* qm = lc.q.data() + static_cast<Eigen::Index>(m) * lc.q.cols() + h * hd;
        for (int nk = 0; nk <= m; ++nk) {
          const float* kn = lc.k.data() + static_cast<Eigen::Index>(nk) * lc.k.cols() + kvh * hd;
          double contribution = 0.0, derivative = 0.0;
          for (int j = B.first_pair; j <= B.last_pair; ++j) {
            const auto ch = pair_channels(dims, j);
            const double qx = qm[ch[0]], qy = qm[ch[1]], kx = kn[ch[0]], ky = kn[ch[1]];
            contribution += qx * kx + qy * ky;
            derivative -= inv_freq[static_cast<std::size_t>(j)] * (m - nk) * (qy * kx - qx * ky);
          }
          contribution *= inv_sqrt_hd;
          derivative *= inv_sqrt_hd;
          ((m - nk) < L0 ? l_short : l_long).push_back(static_cast<float>(std::abs(contribution)));
          ip_sum += derivative * derivative;
          ++ip_count;
        }
      }
    }
    const auto idx = static_cast<std::size_t>(cell);
    d.interpolation_pressure[idx] = ip_count > 0 ? std::sqrt(ip_sum / static_cast<double>(ip_count)) : 0.0;
    auto ratio = [](double a, double b2) { return b2 > 0.0 ? a / b2 : std::numeric_limits<double>::quiet_NaN(); };
    d.tir_q_max[idx] = ratio(detail::max_of(q_long), detail::max_of(q_short));
    d.tir_k_max[idx] = ratio(detail::max_of(k_long), detail::max_of(k_short));
    d.tir_logit_max[idx] = ratio(detail::max_of(l_long), detail::max_of(l_short));
    d.tir_q_quantile[idx] = ratio(detail::quantile_of(q_long, o.quantile), detail::quantile_of(q_short, o.quantile));
    d.tir_k_quantile[idx] = ratio(detail::quantile_of(k_long, o.quantile), detail::quantile_of(k_short, o.quantile));
    d.tir_logit_quantile[idx] =
        ratio(detail::quantile_of(l_long, o.quantile), detail::quantile_of(l_short, o.quantile));
  });
  return d;
}

// RMS of (candidate - reference) logits per layer and distance bucket, and relative attention-output error.
struct error_profile {
  std::vector<int> bucket_start;        // distance buckets [bucket_start[i], bucket_start[i+1]); last open-ended
  std::vector<double> logit_rms;        // (layer, bucket), row-major; NaN where a bucket has no sample
  std::vector<double> attention_error;  // per layer
  int n_layers = 0;
};

inline error_profile compare_captures(const llama_config& c, const std::vector<layer_capture>& reference,
                                      const std::vector<layer_capture>& candidate, const diagnostics_options& o) {
  const int hd = c.head_size();
  const auto n = static_cast<int>(reference.front().q.rows());
  error_profile e;
  e.n_layers = c.n_layers;
  e.bucket_start.push_back(0);
  for (int s = 1; s < n; s *= 2) e.bucket_start.push_back(s);
  const auto nbk = e.bucket_start.size();
  e.logit_rms.assign(static_cast<std::size_t>(c.n_layers) * nbk, std::numeric_limits<double>::quiet_NaN());
  e.attention_error.assign(static_cast<std::size_t>(c.n_layers), 0.0);
  const double inv_sqrt_hd = 1.0 / std::sqrt(static_cast<double>(hd));
  detail::parallel_for(c.n_layers, o.threads, [&](int l) {
    const auto& R = reference[static_cast<std::size_t>(l)];
    const auto& C = candidate[static_cast<std::size_t>(l)];
    std::vector<double> sum(nbk, 0.0);
    std::vector<long long> count(nbk, 0);
    for (int m : detail::sampled_queries(n, o.query_samples))
      for (int h = 0; h < c.n_heads; ++h) {
        const int kvh = kv_head_of(h, c.n_heads, c.n_kv_heads);
        for (int nk = 0; nk <= m; ++nk) {
          double lr = 0.0, lc = 0.0;
          for (int ch = 0; ch < hd; ++ch) {
            lr += static_cast<double>(R.q(m, h * hd + ch)) * R.k(nk, kvh * hd + ch);
            lc += static_cast<double>(C.q(m, h * hd + ch)) * C.k(nk, kvh * hd + ch);
          }
          const double diff = (lc - lr) * inv_sqrt_hd;
          const int dist = m - nk;
          std::size_t bk = 0;
          while (bk + 1 < nbk && e.bucket_start[bk + 1] <= dist) ++bk;
          sum[bk] += diff * diff;
          ++count[bk];
        }
      }
    for (std::size_t bk = 0; bk < nbk; ++bk)
      if (count[bk] > 0) e.logit_rms[static_cast<std::size_t>(l) * nbk + bk] = std::sqrt(sum[bk] / static_cast<double>(count[bk]));
    const double ref_norm = R.att.norm();
    e.attention_error[static_cast<std::size_t>(l)] = ref_norm > 0.0 ? (C.att - R.att).norm() / ref_norm : 0.0;
  });
  return e;
}

// Loss-based Interpolation Pressure per band: [NLL(theta'_B * (1 + eps)) - NLL(theta')] / eps, the mean dev NLL of
// `model` (with `hooks`) when only band B's effective frequencies are scaled by (1 + eps). One evaluation per band
// plus the baseline. Windows run at positions 0..n-1 with `scaling` (seq_len = longest window).
inline std::vector<double> loss_interpolation_pressure(const llama_model& model,
                                                       const std::vector<std::vector<int>>& windows,
                                                       const rope_scaling& scaling, const band_partition& bands,
                                                       const forward_hooks* hooks = nullptr, double epsilon = 0.05,
                                                       int threads = 0) {
  if (windows.empty()) throw invalid_argument("loss-based Interpolation Pressure needs at least one window");
  const rope_dims dims = model.config.rope_geometry();
  int longest = 0;
  for (const auto& w : windows) longest = std::max(longest, static_cast<int>(w.size()));
  const auto inv = inverse_frequencies(scaling, dims, longest);
  const double a = attention_factor(scaling, dims, longest);
  std::vector<int> positions(static_cast<std::size_t>(longest));
  std::iota(positions.begin(), positions.end(), 0);
  auto mean_nll = [&](const std::vector<double>& freqs) {
    const rope_table table(dims, freqs, a, positions);
    double sum = 0.0;
    long long n = 0;
    for (const auto& w : windows) {
      for (double v : window_nll(model, w, table, threads, hooks)) sum += v;
      n += static_cast<long long>(w.size()) - 1;
    }
    return sum / static_cast<double>(n);
  };
  const double base = mean_nll(inv);
  std::vector<double> out;
  for (const auto& b : bands.bands) {
    auto f = inv;
    for (int j = b.first_pair; j <= b.last_pair; ++j) f[static_cast<std::size_t>(j)] *= 1.0 + epsilon;
    out.push_back((mean_nll(f) - base) / epsilon);
  }
  return out;
}

}  // namespace v0
}  // namespace qroar
