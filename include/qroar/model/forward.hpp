// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "../detail/parallel.hpp"
#include "../kernels/attention.hpp"
#include "../kernels/gemm.hpp"
#include "../kernels/logsumexp.hpp"
#include "../kernels/norm.hpp"
#include "../kernels/swiglu.hpp"
#include "../rope/apply.hpp"
#include "../tensor.hpp"
#include "llama_weights.hpp"

namespace qroar {
inline namespace v0 {

// Optional interception points of the forward pass, used by simulated KV-cache / activation quantization and
// by the diagnostics. Each receives a block of token rows of one layer and may modify it in place.
// Shapes: q (tokens, n_heads*head_dim), k and v (tokens, n_kv_heads*head_dim); `first_position` is the
// absolute position of row 0.
struct forward_hooks {
  using block_hook = std::function<void(int layer, int first_position, tensor& rows)>;
  block_hook q_pre_rope, k_pre_rope, q_post_rope, k_post_rope, v;
  // Called with the attention output of each layer before W_O: (tokens, n_heads*head_dim).
  block_hook attention_output;
  // Called with the layer input (residual stream) before the layer: (tokens, dim).
  block_hook layer_input;
  // Called with the inputs of the linear layers: the normed attention input (x of wq/wk/wv), the normed FFN input
  // (x of w1/w3), both (tokens, dim), and the FFN hidden state silu(w1 x) * w3 x (x of w2): (tokens, hidden_dim).
  // attention_output above is the input of wo.
  block_hook attention_input, ffn_input, ffn_hidden;
  // Stop after this layer (-1: run all layers); forward_hidden then returns the residual stream after it,
  // without the final norm. Lets layer-wise algorithms (GPTQ, layer-local search objectives) skip the rest.
  int last_layer = -1;

  bool any() const noexcept {
    return q_pre_rope || k_pre_rope || q_post_rope || k_post_rope || v || attention_output || layer_input ||
           attention_input || ffn_input || ffn_hidden;
  }
};

// Keys (after RoPE) and values of every layer for positions [0, length). k, v: (capacity, n_kv_heads*head_dim).
struct kv_cache {
  std::vector<tensor> k, v;
  int length = 0;

  kv_cache() = default;
  kv_cache(const llama_config& c, int capacity) {
    k.assign(static_cast<std::size_t>(c.n_layers), tensor::Zero(capacity, c.kv_dim()));
    v.assign(static_cast<std::size_t>(c.n_layers), tensor::Zero(capacity, c.kv_dim()));
  }
  int capacity() const noexcept { return k.empty() ? 0 : static_cast<int>(k.front().rows()); }
};

namespace detail {

// Rows and features per GEMM task and query rows per attention task: fixed task shapes, so the floating-point
// work of every output element is the same whatever the thread count.
inline constexpr Eigen::Index gemm_row_chunk = 64;
inline constexpr Eigen::Index gemm_col_chunk = 256;
inline constexpr Eigen::Index attention_query_block = 64;

// Rows per task of the row-chunked FFN (run_layers), and the window length from which it is used.
inline constexpr Eigen::Index ffn_row_chunk = 64;
inline constexpr Eigen::Index ffn_chunked_from = 256;

// Per-thread scratch, 64-byte aligned; grows, never shrinks. Slot 0: attention and FFN tasks, slot 1: packed
// weights of matmul_transposed, slots 2-4: the FFN's packed W1, W3, W2.
inline constexpr int scratch_slots = 5;
inline float* scratch(int slot, std::size_t floats) {
  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> buffers[scratch_slots];
  auto& b = buffers[slot];
  if (b.size() < floats) b.resize(floats);
  return b.data();
}

// out = x * w^T, x: (n, in), w: (out_features, in) -> out: (n, out_features), by kernels::gemm_nt: w is packed once
// per call (in parallel over feature panels), then tasks of (gemm_row_chunk rows, gemm_col_chunk features) run
// the kernel. Each output element is the same FMA sequence whatever the split, so the thread count never matters.
inline constexpr Eigen::Index gemm_panels_per_task =
    std::max<Eigen::Index>(1, gemm_col_chunk / kernels::gemm_panel_width<xsimd::default_arch>());

// Packs w for kernels::gemm_nt into this thread's scratch (slot 1 unless told), in parallel over groups of panels.
inline const float* pack_transposed(const tensor& w, int threads, int slot = 1) {
  using arch = xsimd::default_arch;
  constexpr Eigen::Index P = kernels::gemm_panel_width<arch>();
  const Eigen::Index features = w.rows(), in = w.cols(), panels = (features + P - 1) / P;
  float* packed = scratch(slot, kernels::packed_weights_size(features, in, P));
  const Eigen::Index groups = (panels + gemm_panels_per_task - 1) / gemm_panels_per_task;
  parallel_for(static_cast<int>(groups), threads, [&](int g) {
    const Eigen::Index p0 = g * gemm_panels_per_task;
    kernels::pack_weights{}(arch{}, w.data(), w.cols(), features, in, p0, std::min(panels, p0 + gemm_panels_per_task),
                            packed);
  });
  return packed;
}

inline void matmul_transposed(const tensor& x, const tensor& w, tensor& out, int threads) {
  using arch = xsimd::default_arch;
  constexpr Eigen::Index P = kernels::gemm_panel_width<arch>();
  QROAR_ASSERT(x.cols() == w.cols(), "matmul_transposed: x and w must have the same number of columns");
  const Eigen::Index n = x.rows(), features = w.rows(), in = w.cols();
  out.resize(n, features);
  if (n == 0 || features == 0) return;
  const float* packed = pack_transposed(w, threads);
  const Eigen::Index panels = (features + P - 1) / P;
  const Eigen::Index groups = (panels + gemm_panels_per_task - 1) / gemm_panels_per_task;
  const Eigen::Index row_tasks = (n + gemm_row_chunk - 1) / gemm_row_chunk;
  parallel_for(static_cast<int>(row_tasks * groups), threads, [&](int t) {
    const Eigen::Index r0 = (t / groups) * gemm_row_chunk, p0 = (t % groups) * gemm_panels_per_task;
    kernels::gemm_nt{}(arch{}, x.data() + r0 * x.cols(), x.cols(), std::min(gemm_row_chunk, n - r0), packed, features,
                       in, p0, std::min(panels, p0 + gemm_panels_per_task), out.data() + r0 * out.cols(), out.cols());
  });
}

// Activation buffers of one forward pass, reused across calls on the same thread so that evaluating window after
// window allocates (and page-faults) nothing new: resize() keeps the storage when the shape is unchanged.
struct forward_buffers {
  tensor x, xb, q, k, v, att, proj, h1, h3;
};

// Lends this thread's buffers for the lifetime of the lease; a nested forward pass (a hook running one) gets its
// own set, one per nesting depth.
class forward_buffers_lease {
 public:
  forward_buffers_lease() {
    pool& p = this_thread();
    if (p.depth == p.sets.size()) p.sets.push_back(std::make_unique<forward_buffers>());
    buffers_ = p.sets[p.depth++].get();
  }
  ~forward_buffers_lease() { --this_thread().depth; }
  forward_buffers_lease(const forward_buffers_lease&) = delete;
  forward_buffers_lease& operator=(const forward_buffers_lease&) = delete;
  forward_buffers& operator*() const noexcept { return *buffers_; }
  forward_buffers* operator->() const noexcept { return buffers_; }

 private:
  struct pool {
    std::vector<std::unique_ptr<forward_buffers>> sets;
    std::size_t depth = 0;
  };
  static pool& this_thread() {
    thread_local pool p;
    return p;
  }
  forward_buffers* buffers_;
};

// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * g, per row (kernels::rmsnorm).
inline void rmsnorm_rows(const tensor& x, const vector& g, float eps, tensor& out) {
  out.resize(x.rows(), x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    kernels::rmsnorm{}(xsimd::default_arch{}, x.data() + t * x.cols(), g.data(), static_cast<std::size_t>(x.cols()),
                       eps, out.data() + t * out.cols());
}

// Causal attention of query rows [r0, r0 + m) of head h against keys [0, start + r0 + m) of its KV head:
// softmax(q k^T * scale) v, with the kernels of kernels/attention.hpp (q and the keys already rotated).
// q: (n, n_heads*hd), K, V: (capacity, n_kv_heads*hd), att: (n, n_heads*hd).
inline void attention_block(const tensor& q, const tensor& K, const tensor& V, int h, int kvh, int hd,
                            Eigen::Index start, Eigen::Index r0, Eigen::Index m, float scale, tensor& att) {
  const Eigen::Index keys = start + r0 + m;  // keys visible to the last row of the block
  const Eigen::Index ldt = kernels::padded_queries(m);
  const std::size_t logits = static_cast<std::size_t>(keys * ldt);
  const std::size_t work = std::max(kernels::attention_logits_workspace(m, hd),
                                    kernels::attention_weighted_sum_workspace(m, hd));
  float* sT = scratch(0, logits + work + static_cast<std::size_t>(ldt));
  float* ws = sT + logits;  // logits is a multiple of 32 floats: ws stays 64-byte aligned
  float* inv_sum = ws + work;
  const xsimd::default_arch arch{};
  kernels::attention_logits{}(arch, q.data() + r0 * q.cols() + h * hd, q.cols(), m, K.data() + kvh * hd, K.cols(),
                              keys, hd, scale, kernels::rope_rows{}, sT, ldt, ws);
  kernels::causal_softmax{}(arch, sT, ldt, keys, m, start + r0 + 1, inv_sum);
  kernels::attention_weighted_sum{}(arch, sT, ldt, keys, m, V.data() + kvh * hd, V.cols(), hd, inv_sum,
                                    att.data() + r0 * att.cols() + h * hd, att.cols(), ws);
}

}  // namespace detail

namespace detail {

// Projections a caller already has for attention_heads, each (tokens, features): q and k as x W^T before their
// hooks and RoPE, v after its hook. Layer-wise searches reuse them, since band scales of W_Q/W_K never change V
// and change only some rows of W_Q/W_K.
struct given_projections {
  const tensor* q = nullptr;
  const tensor* k = nullptr;
  const tensor* v = nullptr;
};

// The attention half of layer l up to (not including) W_O: projections of the normed layer input xb (n, dim),
// the q/k/v hooks, RoPE, and causal attention into b.att (n, n_heads*head_dim); k and v go to the cache when
// there is one. Projections in `given` are used instead of computed.
inline void attention_heads(const llama_model& model, int l, const tensor& xb, kv_cache* cache, int start,
                            const rope_table& table, int threads, const forward_hooks* hooks, forward_buffers& b,
                            const given_projections& given = {}) {
  const llama_config& c = model.config;
  const llama_layer& L = model.layers[static_cast<std::size_t>(l)];
  const auto n = xb.rows();
  const int hd = c.head_size();
  tensor &q = b.q, &k = b.k, &v = b.v, &att = b.att;
  att.resize(n, c.q_dim());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // in blocks of rows: every (token, head) is rotated by the same operations whatever the thread count
  auto rotate = [&](tensor& m, int heads) {
    constexpr Eigen::Index rows_per_task = 64;
    const auto tasks = static_cast<int>((n + rows_per_task - 1) / rows_per_task);
    parallel_for(tasks, threads, [&](int task) {
      const Eigen::Index t1 = std::min<Eigen::Index>(n, (task + 1) * rows_per_task);
      for (Eigen::Index t = task * rows_per_task; t < t1; ++t)
        for (int h = 0; h < heads; ++h) rotate_head(m.data() + t * m.cols() + h * hd, table, start + t);
    });
  };
  const tensor* v_given = given.v;
  // given projections may already be the buffers themselves (the search builds them there)
  if (given.q != nullptr) { if (given.q != &q) q = *given.q; } else matmul_transposed(xb, L.wq, q, threads);
  if (given.k != nullptr) { if (given.k != &k) k = *given.k; } else matmul_transposed(xb, L.wk, k, threads);
  if (v_given == nullptr) matmul_transposed(xb, L.wv, v, threads);
  QROAR_ASSERT(q.rows() == n && q.cols() == c.q_dim() && k.rows() == n && k.cols() == c.kv_dim(),
               "given q, k must be (tokens, q_dim), (tokens, kv_dim)");
  if (hooks && hooks->q_pre_rope) hooks->q_pre_rope(l, start, q);
  if (hooks && hooks->k_pre_rope) hooks->k_pre_rope(l, start, k);
  rotate(q, c.n_heads);
  rotate(k, c.n_kv_heads);
  if (hooks && hooks->q_post_rope) hooks->q_post_rope(l, start, q);
  if (hooks && hooks->k_post_rope) hooks->k_post_rope(l, start, k);
  if (v_given == nullptr && hooks && hooks->v) hooks->v(l, start, v);
  const tensor* K = &k;
  const tensor* V = v_given != nullptr ? v_given : &v;
  QROAR_ASSERT(V->rows() == n && V->cols() == c.kv_dim(), "given v must be (tokens, kv_dim)");
  if (cache != nullptr) {
    tensor& Kc = cache->k[static_cast<std::size_t>(l)];
    tensor& Vc = cache->v[static_cast<std::size_t>(l)];
    Kc.middleRows(start, n) = k;
    Vc.middleRows(start, n) = *V;
    K = &Kc;
    V = &Vc;
  }

  // Causal attention per (head, block of query rows): softmax(q k^T / sqrt(hd)) v over keys [0, pos].
  // Tasks are fixed (head, row block) pairs, so the work of each output row does not depend on the thread count.
  const Eigen::Index qblocks = (n + attention_query_block - 1) / attention_query_block;
  parallel_for(static_cast<int>(c.n_heads * qblocks), threads, [&](int task) {
    const int h = task / static_cast<int>(qblocks);
    const Eigen::Index r0 = (task % qblocks) * attention_query_block;
    const Eigen::Index m = std::min(attention_query_block, n - r0);
    attention_block(q, *K, *V, h, h / c.n_rep(), hd, start, r0, m, scale, att);
  });
}

// x += w2 (silu(w1 rmsnorm(x)) * w3 rmsnorm(x)) in tasks of ffn_row_chunk rows: W1, W3, W2 packed once, each task
// normalizes its rows and runs the three GEMMs (kernels::gemm_nt over all features) in its own scratch. Every
// element gets the same operations as the whole-window path (rmsnorm_rows, matmul_transposed, swiglu, +=), so
// the results are bitwise identical; memory is threads x chunk x (2 dim + 2 hidden) instead of n x (2 dim + 2 hidden).
inline void ffn_in_row_chunks(const llama_layer& L, const llama_config& c, tensor& x, int threads) {
  using arch = xsimd::default_arch;
  constexpr Eigen::Index P = kernels::gemm_panel_width<arch>();
  const Eigen::Index n = x.rows(), dim = c.dim, hidden = c.hidden_dim;
  const float* w1 = pack_transposed(L.w1, threads, 2);
  const float* w3 = pack_transposed(L.w3, threads, 3);
  const float* w2 = pack_transposed(L.w2, threads, 4);
  const Eigen::Index hidden_panels = (hidden + P - 1) / P, dim_panels = (dim + P - 1) / P;
  const int tasks = static_cast<int>((n + ffn_row_chunk - 1) / ffn_row_chunk);
  parallel_for(tasks, threads, [&](int task) {
    const Eigen::Index r0 = task * ffn_row_chunk, m = std::min(ffn_row_chunk, n - r0);
    float* xb = scratch(0, static_cast<std::size_t>(ffn_row_chunk * (2 * dim + 2 * hidden)));
    float* h1 = xb + ffn_row_chunk * dim;
    float* h3 = h1 + ffn_row_chunk * hidden;
    float* proj = h3 + ffn_row_chunk * hidden;
    for (Eigen::Index t = 0; t < m; ++t)
      kernels::rmsnorm{}(arch{}, x.data() + (r0 + t) * dim, L.ffn_norm.data(), static_cast<std::size_t>(dim),
                         c.norm_eps, xb + t * dim);
    kernels::gemm_nt{}(arch{}, xb, dim, m, w1, hidden, dim, 0, hidden_panels, h1, hidden);
    kernels::gemm_nt{}(arch{}, xb, dim, m, w3, hidden, dim, 0, hidden_panels, h3, hidden);
    kernels::swiglu{}(arch{}, h1, h3, static_cast<std::size_t>(m * hidden), h1);
    kernels::gemm_nt{}(arch{}, h1, hidden, m, w2, dim, hidden, 0, dim_panels, proj, dim);
    for (Eigen::Index t = 0; t < m; ++t)
      for (Eigen::Index j = 0; j < dim; ++j) x(r0 + t, j) += proj[t * dim + j];
  });
}

// The body of forward_layers. With cache == nullptr (a whole window at positions [0, n), nothing kept), each layer
// attends over its own k and v blocks instead of copies in a cache, so evaluation holds one layer's K and V.
inline void run_layers(const llama_model& model, tensor& x, int first_layer, kv_cache* cache, int start,
                       const rope_table& table, int threads, const forward_hooks* hooks) {
  const llama_config& c = model.config;
  const auto n = x.rows();
  QROAR_ASSERT(x.cols() == c.dim, "x must be (tokens, dim)");
  QROAR_ASSERT(cache != nullptr || start == 0, "without a cache the block must start at position 0");
  QROAR_ASSERT(cache == nullptr || start + n <= cache->capacity(), "kv cache too small");
  QROAR_ASSERT(start + n <= table.cos.rows(), "rope table too short");
  QROAR_ASSERT(first_layer >= 0 && first_layer <= c.n_layers, "first_layer out of range");
  const flush_denormals_scope denormals;  // denormals.hpp
  const forward_buffers_lease lease;
  tensor &xb = lease->xb, &att = lease->att, &proj = lease->proj, &h1 = lease->h1, &h3 = lease->h3;

  for (int l = first_layer; l < c.n_layers; ++l) {
    const llama_layer& L = model.layers[static_cast<std::size_t>(l)];
    if (hooks && hooks->layer_input) {
      tensor copy = x;
      hooks->layer_input(l, start, copy);
    }
    rmsnorm_rows(x, L.attn_norm, c.norm_eps, xb);
    if (hooks && hooks->attention_input) hooks->attention_input(l, start, xb);
    attention_heads(model, l, xb, cache, start, table, threads, hooks, *lease);
    if (hooks && hooks->attention_output) {
      tensor copy = att;
      hooks->attention_output(l, start, copy);
    }
    matmul_transposed(att, L.wo, proj, threads);
    x += proj;

    // SwiGLU FFN (Shazeer 2020): w2 (silu(w1 x) * w3 x). Long windows without FFN hooks run it in row chunks,
    // so the (n, hidden) activations are never held whole.
    if (n >= ffn_chunked_from && !(hooks && (hooks->ffn_input || hooks->ffn_hidden))) {
      ffn_in_row_chunks(L, c, x, threads);
      if (hooks && hooks->last_layer == l) break;
      continue;
    }
    rmsnorm_rows(x, L.ffn_norm, c.norm_eps, xb);
    if (hooks && hooks->ffn_input) hooks->ffn_input(l, start, xb);
    matmul_transposed(xb, L.w1, h1, threads);
    matmul_transposed(xb, L.w3, h3, threads);
    kernels::swiglu{}(xsimd::default_arch{}, h1.data(), h3.data(), static_cast<std::size_t>(h1.size()), h1.data());
    if (hooks && hooks->ffn_hidden) hooks->ffn_hidden(l, start, h1);
    matmul_transposed(h1, L.w2, proj, threads);
    x += proj;
    if (hooks && hooks->last_layer == l) break;
  }
}

}  // namespace detail

// Runs decoder layers [first_layer, n_layers) (or up to hooks->last_layer) on the residual stream `x`
// (n, dim) of tokens at positions [cache.length, cache.length + n), in place, appending their keys and values to
// the cache of those layers. `table` must hold rows for every position up to cache.length + n - 1. Callers that
// cache the input of a layer (layer-wise search objectives) start here instead of at the embeddings.
inline void forward_layers(const llama_model& model, tensor& x, int first_layer, kv_cache& cache,
                           const rope_table& table, int threads = 0, const forward_hooks* hooks = nullptr) {
  detail::run_layers(model, x, first_layer, &cache, cache.length, table, threads, hooks);
  cache.length += static_cast<int>(x.rows());
}

// Token embeddings of `tokens`: (n, dim). Throws invalid_argument for an id outside the vocabulary.
inline tensor embed_tokens(const llama_model& model, const std::vector<int>& tokens) {
  const int vocab = model.config.vocab_size;
  tensor x(static_cast<Eigen::Index>(tokens.size()), model.config.dim);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const int id = tokens[t];
    if (id < 0 || id >= vocab)
      throw invalid_argument("token id " + std::to_string(id) + " out of range [0, " + std::to_string(vocab) + ")");
    x.row(static_cast<Eigen::Index>(t)) = model.token_embedding.row(id);
  }
  return x;
}

// Runs the decoder over `tokens` placed at positions [cache.length, cache.length + n), appending their keys and
// values to `cache`, and returns the final hidden states after the output norm: (n, dim); with
// hooks->last_layer set, the residual stream after that layer instead (no final norm).
// `table` must hold rows for every position up to cache.length + n - 1 (row index = absolute position).
inline tensor forward_hidden(const llama_model& model, const std::vector<int>& tokens, kv_cache& cache,
                             const rope_table& table, int threads = 0, const forward_hooks* hooks = nullptr) {
  const detail::flush_denormals_scope denormals;  // detail/denormals.hpp
  tensor x = embed_tokens(model, tokens);
  forward_layers(model, x, 0, cache, table, threads, hooks);
  if (hooks && hooks->last_layer >= 0) return x;
  tensor out;
  detail::rmsnorm_rows(x, model.final_norm, model.config.norm_eps, out);
  return out;
}

// Logits of a window of tokens at positions [0, n): (n, vocab). For long windows with a large vocabulary prefer
// window_nll, which never holds all logits at once.
inline tensor forward_logits(const llama_model& model, const std::vector<int>& tokens, const rope_table& table,
                             int threads = 0, const forward_hooks* hooks = nullptr) {
  const detail::flush_denormals_scope denormals;  // detail/denormals.hpp
  kv_cache cache(model.config, static_cast<int>(tokens.size()));
  const tensor hidden = forward_hidden(model, tokens, cache, table, threads, hooks);
  tensor logits;
  detail::matmul_transposed(hidden, model.classifier(), logits, threads);
  return logits;
}

namespace detail {

// NLL of tokens[t + 1] for t = 0 .. n-2 from the final hidden states (n, dim) (after the output norm): the
// classifier's logits in chunks of rows (never all at once), log-sum-exp by kernels::logsumexp (float exps of
// logits - max, sums accumulated in double): nll = lse(logits_t) - logits_t[tokens[t + 1]].
inline std::vector<double> nll_from_hidden(const llama_model& model, const tensor& hidden, const std::vector<int>& tokens,
                                           int threads) {
  const auto n = hidden.rows();
  QROAR_ASSERT(static_cast<std::size_t>(n) == tokens.size(), "one hidden row per token");
  if (n < 2) return {};
  std::vector<double> nll(static_cast<std::size_t>(n - 1));
  const tensor& cls = model.classifier();
  using arch = xsimd::default_arch;
  const Eigen::Index vocab = cls.rows(), dim = cls.cols();
  const Eigen::Index panels = (vocab + kernels::gemm_panel_width<arch>() - 1) / kernels::gemm_panel_width<arch>();
  const float* packed = pack_transposed(cls, threads);
  const Eigen::Index chunk = gemm_row_chunk;
  const int tasks = static_cast<int>((n - 1 + chunk - 1) / chunk);
  parallel_for(tasks, threads, [&](int task) {
    const Eigen::Index r0 = task * chunk, m = std::min(chunk, n - 1 - r0);
    float* logits = scratch(0, static_cast<std::size_t>(m * vocab));  // (m, vocab)
    kernels::gemm_nt{}(arch{}, hidden.data() + r0 * dim, dim, m, packed, vocab, dim, 0, panels, logits, vocab);
    for (Eigen::Index i = 0; i < m; ++i) {
      const double lse = kernels::logsumexp{}(arch{}, logits + i * vocab, static_cast<std::size_t>(vocab));
      const int target = tokens[static_cast<std::size_t>(r0 + i + 1)];
      nll[static_cast<std::size_t>(r0 + i)] = lse - static_cast<double>(logits[i * vocab + target]);
    }
  });
  return nll;
}

}  // namespace detail

// Negative log-likelihood (nats) of tokens[t] given tokens[0..t-1], for t = 1 .. n-1, of one window at positions
// [0, n). Returns n-1 values. Logits are formed in chunks of rows; log-sum-exp by kernels::logsumexp (float exps
// of logits - max, sums accumulated in double).
inline std::vector<double> window_nll(const llama_model& model, const std::vector<int>& tokens, const rope_table& table,
                                      int threads = 0, const forward_hooks* hooks = nullptr) {
  const auto n = static_cast<Eigen::Index>(tokens.size());
  if (n < 2) return {};
  // forward_hidden with this thread's reusable buffers and no KV cache (each layer attends over its own k, v)
  const detail::forward_buffers_lease lease;
  const llama_config& c = model.config;
  tensor& x = lease->x;
  x.resize(n, c.dim);
  for (Eigen::Index t = 0; t < n; ++t) {
    const int id = tokens[static_cast<std::size_t>(t)];
    if (id < 0 || id >= c.vocab_size)
      throw invalid_argument("token id " + std::to_string(id) + " out of range [0, " + std::to_string(c.vocab_size) + ")");
    x.row(t) = model.token_embedding.row(id);
  }
  detail::run_layers(model, x, 0, nullptr, 0, table, threads, hooks);
  tensor& hidden = lease->xb;  // free after the layers
  if (hooks && hooks->last_layer >= 0) {
    hidden = x;
  } else {
    detail::rmsnorm_rows(x, model.final_norm, c.norm_eps, hidden);
  }
  return detail::nll_from_hidden(model, hidden, tokens, threads);
}

}  // namespace v0
}  // namespace qroar
