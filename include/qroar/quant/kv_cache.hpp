// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>

#include "../model/forward.hpp"
#include "rtn.hpp"
#include "spec.hpp"

namespace qroar {
inline namespace v0 {

// Simulated quantization of the KV cache and of the q/k activations inside the forward pass.
//  - token granularity: each token's vector of one head is cut into groups of g consecutive channels along
//    head_dim (a shorter last group when head_dim % g != 0); one scale per group (KIVI's V, llama.cpp's K cache
//    blocks, QServe per-head KV4 with g = head_dim).
//  - channel granularity: each channel is cut into groups of g consecutive positions (absolute positions
//    [k*g, (k+1)*g)); one scale per group (KIVI's K, KVQuant). The forward pass sees a whole window at once, so
//    groups are complete; in token-by-token decoding a group holds the positions of the current call only.
// Keys are quantized after RoPE (post-rope) or before it (pre-rope); values have no RoPE.

// Fake-quantizes rows (tokens, n_heads*head_dim) in place, per token and head.
inline void quantize_per_token(tensor& rows, int head_dim, int group_size, int bits, bool symmetric) {
  const rtn_group_params p{bits, symmetric, false};
  const Eigen::Index cols = rows.cols();
  for (Eigen::Index t = 0; t < rows.rows(); ++t)
    for (Eigen::Index h0 = 0; h0 < cols; h0 += head_dim)
      for (Eigen::Index c0 = 0; c0 < head_dim; c0 += group_size) {
        const auto n = static_cast<int>(std::min<Eigen::Index>(group_size, head_dim - c0));
        rtn_quantize_group(rows.data() + t * cols + h0 + c0, n, 1, p, false);
      }
}

// Fake-quantizes rows (tokens, channels) in place per channel, in groups of positions aligned to multiples of
// group_size (row 0 is position `first_position`).
inline void quantize_per_channel(tensor& rows, int first_position, int group_size, int bits, bool symmetric) {
  const Eigen::Index cols = rows.cols();
  Eigen::Index t0 = 0;
  while (t0 < rows.rows()) {
    const Eigen::Index pos = first_position + t0;
    const Eigen::Index end = std::min<Eigen::Index>(rows.rows(), t0 + (group_size - pos % group_size));
    // SIMD lanes are channels (kernels/quantize.hpp; bit-exact with one rtn_group per channel)
    kernels::rtn_fake_quantize_columns{}(xsimd::default_arch{}, rows.data() + t0 * cols, static_cast<int>(end - t0),
                                         static_cast<int>(cols), cols, bits, symmetric);
    t0 = end;
  }
}

namespace detail {

inline forward_hooks::block_hook kv_hook(const kv_quant_spec& s, int bits, int head_dim) {
  if (bits <= 0) return {};
  if (s.granularity == kv_granularity::token)
    return [=](int, int, tensor& rows) { quantize_per_token(rows, head_dim, s.group_size, bits, s.symmetric); };
  return [=](int, int first, tensor& rows) { quantize_per_channel(rows, first, s.group_size, bits, s.symmetric); };
}

}  // namespace detail

// Forward hooks realising the KV-cache and activation parts of a spec (weights are quantized separately).
inline forward_hooks make_quant_hooks(const quant_spec& spec, const llama_config& config) {
  forward_hooks h;
  const int hd = config.head_size();
  if (spec.kv.enabled()) {
    auto k = detail::kv_hook(spec.kv, spec.kv.key_bits, hd);
    (spec.kv.post_rope ? h.k_post_rope : h.k_pre_rope) = k;
    h.v = detail::kv_hook(spec.kv, spec.kv.value_bits, hd);
  }
  if (spec.activations.enabled()) {
    const auto& a = spec.activations;
    auto q = detail::kv_hook(a, a.key_bits, hd);     // key_bits holds the q width for act specs
    auto k = detail::kv_hook(a, a.value_bits, hd);   // value_bits holds the k width
    auto chain = [](forward_hooks::block_hook first, forward_hooks::block_hook second) -> forward_hooks::block_hook {
      if (!first) return second;
      if (!second) return first;
      return [first, second](int l, int p, tensor& r) {
        first(l, p, r);
        second(l, p, r);
      };
    };
    if (a.post_rope) {
      h.q_post_rope = chain(h.q_post_rope, q);
      h.k_post_rope = chain(h.k_post_rope, k);
    } else {
      h.q_pre_rope = chain(h.q_pre_rope, q);
      h.k_pre_rope = chain(h.k_pre_rope, k);
    }
  }
  return h;
}

}  // namespace v0
}  // namespace qroar
