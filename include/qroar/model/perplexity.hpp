// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../detail/denormals.hpp"
#include "../error.hpp"
#include "forward.hpp"

namespace qroar {
inline namespace v0 {

// How a token stream is cut into evaluation windows.
//  - Windows have `ctx` tokens and start every `stride` tokens (stride = ctx: non-overlapping).
//  - Only full windows are evaluated; a stream shorter than ctx is an error.
//  - The first window scores its tokens 1 .. ctx-1; a later window scores only the tokens no earlier window
//    scored (its last `stride` tokens), each predicted from the full window prefix before it.
//  - Each window runs at positions 0 .. ctx-1. The stream is used as given: BOS handling is the caller's
//    (the CLI's --text path starts each window with BOS; --tokens uses the ids exactly).
struct perplexity_options {
  int ctx = 0;
  int stride = 0;       // 0 means ctx
  int max_windows = 0;  // 0 means all
  int bucket = 0;       // width of the per-position buckets; 0 means max(1, ctx / 16)
  int threads = 0;
  rope_scaling scaling;                              // applied with seq_len = ctx
  const forward_hooks* hooks = nullptr;
  std::function<void(int done, int total)> progress;  // called after each window
};

struct position_bucket {
  int start = 0, end = 0;  // positions [start, end) inside the window
  double mean_nll = 0.0;
  long long count = 0;
};

struct perplexity_result {
  double mean_nll = 0.0;
  double ppl = 0.0;
  long long tokens_scored = 0;
  int windows = 0;
  std::vector<position_bucket> per_position;
  std::vector<double> window_mean_nll;  // one per window
};

// Longest window accepted: 2^20 tokens. A window's activations grow linearly and its attention work
// quadratically with its length (2^20 tokens: ~10^12 query-key products per head and layer); 16 x the longest
// trained context of the models qroar reads (LLaMA 3.1: 131 072) still fits under it.
inline constexpr int max_context_tokens = 1 << 20;

// Bytes one window of `ctx` tokens needs in window_nll, an upper estimate: per token the residual, normed input
// and projection (3 dim), q and attention output (2 q_dim), k and v (2 kv_dim), one more dim-wide copy for the
// hooks, the RoPE table row (head_dim) and the id / NLL bookkeeping (16 bytes); floats are 4 bytes.
// The feed-forward and logits run in row chunks (forward.hpp), so they do not grow with ctx.
inline std::uint64_t window_memory_bytes(const llama_config& c, std::uint64_t ctx) noexcept {
  const auto per_token = 4 * (4 * static_cast<std::uint64_t>(c.dim) + 2 * static_cast<std::uint64_t>(c.q_dim()) +
                              2 * static_cast<std::uint64_t>(c.kv_dim()) + static_cast<std::uint64_t>(c.head_size())) +
                         16;
  return ctx * per_token;
}

// invalid_argument when `ctx` is not in [2, max_context_tokens] (`what` names the option).
inline void check_context_length(long long ctx, const char* what = "context length") {
  if (ctx < 2) throw invalid_argument(std::string(what) + " must be at least 2, got " + std::to_string(ctx));
  if (ctx > max_context_tokens)
    throw invalid_argument(std::string(what) + " " + std::to_string(ctx) + " exceeds the limit of " +
                           std::to_string(max_context_tokens) + " tokens (max_context_tokens)");
}

// Window start offsets for a stream of n tokens.
inline std::vector<long long> window_starts(long long n, const perplexity_options& o) {
  const int stride = o.stride > 0 ? o.stride : o.ctx;
  check_context_length(o.ctx);
  if (stride > o.ctx) throw invalid_argument("stride must not exceed the context length");
  if (n < o.ctx)
    throw invalid_argument("the token stream has " + std::to_string(n) + " tokens, fewer than one window of " +
                           std::to_string(o.ctx));
  std::vector<long long> starts;
  for (long long s = 0; s + o.ctx <= n; s += stride) {
    starts.push_back(s);
    if (o.max_windows > 0 && static_cast<int>(starts.size()) >= o.max_windows) break;
  }
  return starts;
}

namespace detail {
// The scoring of evaluate_perplexity, one window at a time: shared by the vector and the streamed overloads, so
// that both give bit-identical results on the same tokens.
struct perplexity_accumulator {
  const llama_model& model;
  const perplexity_options& o;
  int stride, bucket;
  rope_table table;
  perplexity_result r;
  std::vector<double> bucket_sum;
  std::vector<long long> bucket_count;
  double total = 0.0;

  perplexity_accumulator(const llama_model& m, const perplexity_options& opt)
      : model(m), o(opt), stride(opt.stride > 0 ? opt.stride : opt.ctx),
        bucket(opt.bucket > 0 ? opt.bucket : std::max(1, opt.ctx / 16)),
        table(rope_table::for_positions(m.config.rope_geometry(), opt.scaling, opt.ctx)),
        bucket_sum(static_cast<std::size_t>((opt.ctx + bucket - 1) / bucket), 0.0), bucket_count(bucket_sum.size(), 0) {}

  void add_window(std::size_t w, const std::vector<int>& window) {
    const auto nll = window_nll(model, window, table, o.threads, o.hooks);
    const int first_scored = w == 0 ? 1 : o.ctx - stride;  // position of the first new token
    double wsum = 0.0;
    long long wcount = 0;
    for (int p = std::max(first_scored, 1); p < o.ctx; ++p) {
      const double v = nll[static_cast<std::size_t>(p - 1)];
      if (!std::isfinite(v)) throw numeric_error("non-finite NLL at window " + std::to_string(w) + ", position " +
                                                 std::to_string(p));
      wsum += v;
      ++wcount;
      bucket_sum[static_cast<std::size_t>(p / bucket)] += v;
      ++bucket_count[static_cast<std::size_t>(p / bucket)];
    }
    total += wsum;
    r.tokens_scored += wcount;
    r.window_mean_nll.push_back(wcount > 0 ? wsum / static_cast<double>(wcount) : 0.0);
    ++r.windows;
  }

  perplexity_result finish() {
    r.mean_nll = r.tokens_scored > 0 ? total / static_cast<double>(r.tokens_scored) : 0.0;
    r.ppl = std::exp(r.mean_nll);
    for (std::size_t b = 0; b < bucket_sum.size(); ++b) {
      if (bucket_count[b] == 0) continue;
      position_bucket pb;
      pb.start = static_cast<int>(b) * bucket;
      pb.end = std::min(o.ctx, pb.start + bucket);
      pb.count = bucket_count[b];
      pb.mean_nll = bucket_sum[b] / static_cast<double>(bucket_count[b]);
      r.per_position.push_back(pb);
    }
    return r;
  }
};
}  // namespace detail

inline perplexity_result evaluate_perplexity(const llama_model& model, const std::vector<int>& stream,
                                             const perplexity_options& o) {
  const detail::flush_denormals_scope denormals;  // detail/denormals.hpp
  const auto starts = window_starts(static_cast<long long>(stream.size()), o);
  detail::perplexity_accumulator acc(model, o);
  for (std::size_t w = 0; w < starts.size(); ++w) {
    const std::vector<int> window(stream.begin() + starts[w], stream.begin() + starts[w] + o.ctx);
    acc.add_window(w, window);
    if (o.progress) o.progress(static_cast<int>(w + 1), static_cast<int>(starts.size()));
  }
  return acc.finish();
}

// A source of tokens pulled in pieces: appends the next tokens to `out` and returns true, or returns false (and
// appends nothing) when the stream has ended. text_token_stream and token_id_stream (io/text_tokens.hpp) read
// files this way.
using token_pull = std::function<bool(std::vector<int>& out)>;

// evaluate_perplexity over a stream pulled piece by piece: the same windows (window_starts on the whole stream)
// and the same result, bit for bit, while only the tokens from the current window's start on are kept (one window
// plus one pulled piece), whatever the length of the stream. The progress callback gets total = max_windows, or
// 0 when the number of windows is not known in advance.
inline perplexity_result evaluate_perplexity_stream(const llama_model& model, const token_pull& pull,
                                                    const perplexity_options& o) {
  const detail::flush_denormals_scope denormals;  // detail/denormals.hpp
  const int stride = o.stride > 0 ? o.stride : o.ctx;
  check_context_length(o.ctx);
  if (stride > o.ctx) throw invalid_argument("stride must not exceed the context length");
  detail::perplexity_accumulator acc(model, o);
  std::vector<int> buf;       // stream tokens [offset, offset + buf.size())
  long long offset = 0, start = 0, seen = 0;
  bool ended = false;
  for (std::size_t w = 0;; ++w) {
    if (o.max_windows > 0 && static_cast<int>(w) >= o.max_windows) break;
    while (!ended && offset + static_cast<long long>(buf.size()) < start + o.ctx) {
      const std::size_t before = buf.size();
      ended = !pull(buf);
      seen += static_cast<long long>(buf.size() - before);
    }
    if (offset + static_cast<long long>(buf.size()) < start + o.ctx) {
      if (w == 0)
        throw invalid_argument("the token stream has " + std::to_string(seen) + " tokens, fewer than one window of " +
                               std::to_string(o.ctx));
      break;
    }
    const auto from = buf.begin() + (start - offset);
    acc.add_window(w, std::vector<int>(from, from + o.ctx));
    if (o.progress) o.progress(static_cast<int>(w + 1), o.max_windows > 0 ? o.max_windows : 0);
    start += stride;
    // drop the tokens before the next window's start, once they are at least half the buffer (amortized O(1)
    // per token); the buffer then holds at most twice (one window + one pulled piece)
    const long long dead = std::min<long long>(start - offset, static_cast<long long>(buf.size()));
    if (2 * dead >= static_cast<long long>(buf.size())) {
      buf.erase(buf.begin(), buf.begin() + dead);
      offset += dead;
    }
  }
  return acc.finish();
}

}  // namespace v0
}  // namespace qroar
