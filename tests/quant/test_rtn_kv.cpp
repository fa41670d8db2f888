// What quantization specs parse to, and RTN / KV-cache / activation fake quantization against a reference written
// here from the formulas of docs/quantization.md (not the library's code): which values share a scale (groups
// along a row, per channel, per tensor; per token and head along head_dim; per channel over aligned positions),
// the symmetric and asymmetric grids, fp16 scales, the clip search, and where the forward hooks sit.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <qroar/detail/half.hpp>
#include <qroar/quant/kv_cache.hpp>
#include <qroar/quant/rtn.hpp>
#include <qroar/quant/spec.hpp>

#include "../kernels/kernels_testing.hpp"

namespace {

qroar::tensor gaussian(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  return qroar_kernels_test::random_tensor(rows, cols, rng);
}

// Round-to-nearest fake quantization of the values at `idx` of `v` (one group), from the formulas:
//   symmetric, b bits:  s = max|x| / (2^(b-1) - 1),  x' = s * clamp(round(x / s), -2^(b-1), 2^(b-1) - 1)
//   asymmetric, b bits: s = (max x - min x) / (2^b - 1), z = round(-min x / s),
//                       x' = s * (clamp(round(x / s) + z, 0, 2^b - 1) - z)
// round = to nearest, ties to even; s optionally rounded to fp16; s = 0 keeps 0 (sym) / x (asym).
void reference_group(std::vector<float>& v, const std::vector<std::size_t>& idx, int bits, bool symmetric,
                     bool fp16_scale = false, float clip = 1.0f) {
  auto fp16 = [&](float s) { return fp16_scale ? qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(s)) : s; };
  if (symmetric) {
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    float amax = 0.0f;
    for (std::size_t i : idx) amax = std::max(amax, std::fabs(v[i]));
    const float s = fp16(amax * clip / qmax);
    for (std::size_t i : idx) v[i] = s > 0.0f ? std::clamp(std::nearbyint(v[i] / s), -qmax - 1.0f, qmax) * s : 0.0f;
  } else {
    const float levels = static_cast<float>((1 << bits) - 1);
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    for (std::size_t i : idx) mn = std::min(mn, v[i]), mx = std::max(mx, v[i]);
    mn *= clip;
    mx *= clip;
    const float s = fp16((mx - mn) / levels);
    if (!(s > 0.0f)) return;
    const float z = std::nearbyint(-mn / s);
    for (std::size_t i : idx) v[i] = (std::clamp(std::nearbyint(v[i] / s) + z, 0.0f, levels) - z) * s;
  }
}

std::vector<float> as_vector(const qroar::tensor& t) { return std::vector<float>(t.data(), t.data() + t.size()); }

}  // namespace

TEST_CASE("quant specs parse to the documented fields") {
  const auto a = qroar::parse_quant_spec("rtn:w3:g5:asym:clip:fp16");
  CHECK(a.weights.method == qroar::weight_method::rtn);
  CHECK(a.weights.bits == 3);
  CHECK(a.weights.granularity == qroar::weight_granularity::group);
  CHECK(a.weights.group_size == 5);
  CHECK_FALSE(a.weights.symmetric);
  CHECK(a.weights.clip_search);
  CHECK(a.weights.fp16_scales);
  CHECK_FALSE(a.kv.enabled());
  const auto b = qroar::parse_quant_spec("rtn:w8:channel+kv:k4:token:g8:pre-rope");
  CHECK(b.weights.granularity == qroar::weight_granularity::channel);
  CHECK(b.weights.symmetric);  // the default
  CHECK(b.kv.key_bits == 4);
  CHECK(b.kv.value_bits == 0);  // keys only: values stay full precision
  CHECK(b.kv.granularity == qroar::kv_granularity::token);
  CHECK(b.kv.group_size == 8);
  CHECK_FALSE(b.kv.post_rope);
  CHECK(b.kv.symmetric);
  const auto c = qroar::parse_quant_spec("kv:k2v4:channel:g32:asym");
  CHECK(c.kv.key_bits == 2);
  CHECK(c.kv.value_bits == 4);
  CHECK(c.kv.granularity == qroar::kv_granularity::channel);
  CHECK(c.kv.post_rope);  // the default
  CHECK_FALSE(c.kv.symmetric);
  CHECK_FALSE(c.quantizes_weights());
  const auto d = qroar::parse_quant_spec("gptq:w4:g128:act-order+act:q8k8:token:g32");
  CHECK(d.weights.method == qroar::weight_method::gptq);
  CHECK(d.weights.act_order);
  CHECK(d.activations.key_bits == 8);    // q
  CHECK(d.activations.value_bits == 8);  // k
  CHECK(d.activations.post_rope);
  CHECK(qroar::parse_quant_spec("rtn:w4:tensor").weights.granularity == qroar::weight_granularity::per_tensor);
  CHECK(qroar::parse_quant_spec("ggml:q4_K").weights.ggml == qroar::ggml_type::q4_k);
}

TEST_CASE("RTN: groups along rows (shorter last group), channels, whole tensor; sym, asym, 2-8 bits, fp16 scales") {
  const qroar::tensor w = gaussian(3, 12, 11);
  struct item { const char* spec; std::vector<std::vector<std::size_t>> groups; };
  auto row_groups = [](std::size_t rows, std::size_t cols, std::size_t g) {
    std::vector<std::vector<std::size_t>> out;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c0 = 0; c0 < cols; c0 += g) {
        std::vector<std::size_t> idx;
        for (std::size_t c = c0; c < std::min(cols, c0 + g); ++c) idx.push_back(r * cols + c);
        out.push_back(idx);
      }
    return out;
  };
  std::vector<std::size_t> all(36);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (const auto& it : {item{"rtn:w4:g5:sym", row_groups(3, 12, 5)}, item{"rtn:w3:g5:asym", row_groups(3, 12, 5)},
                         item{"rtn:w8:channel:sym", row_groups(3, 12, 12)}, item{"rtn:w2:channel:asym", row_groups(3, 12, 12)},
                         item{"rtn:w4:tensor", {all}}, item{"rtn:w6:g4:asym:fp16", row_groups(3, 12, 4)},
                         item{"rtn:w5:g12:sym:fp16", row_groups(3, 12, 12)}}) {
    CAPTURE(it.spec);
    const auto s = qroar::parse_quant_spec(it.spec).weights;
    qroar::tensor q = w;
    qroar::rtn_quantize(q, s);
    auto ref = as_vector(w);
    for (const auto& g : it.groups) reference_group(ref, g, s.bits, s.symmetric, s.fp16_scales);
    CHECK(as_vector(q) == ref);
    // at most 2^bits distinct values per group
    for (const auto& g : it.groups) {
      std::vector<float> vals;
      for (std::size_t i : g) vals.push_back(q.data()[i]);
      std::sort(vals.begin(), vals.end());
      CHECK(std::unique(vals.begin(), vals.end()) - vals.begin() <= (1 << s.bits));
    }
  }
}

TEST_CASE("RTN clip search: the chosen clip never has more squared error than no clipping, and one of 21 ratios") {
  const qroar::tensor w = gaussian(4, 32, 5);
  for (const char* spec : {"rtn:w3:g32:sym:clip", "rtn:w2:g32:asym:clip"}) {
    CAPTURE(spec);
    const auto s = qroar::parse_quant_spec(spec).weights;
    qroar::tensor q = w;
    qroar::rtn_quantize(q, s);
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      std::vector<std::size_t> idx(32);
      for (std::size_t i = 0; i < 32; ++i) idx[i] = static_cast<std::size_t>(r) * 32 + i;
      auto err = [&](const std::vector<float>& v) {
        double e = 0.0;
        for (std::size_t i : idx) e += std::pow(static_cast<double>(v[i]) - w.data()[i], 2);
        return e;
      };
      auto unclipped = as_vector(w);
      reference_group(unclipped, idx, s.bits, s.symmetric);
      const double chosen = err(as_vector(q));
      CHECK(chosen <= err(unclipped));
      bool found = false;  // the result is the reference grid at one of the documented ratios 1, 0.975, ..., 0.5
      for (int k = 0; k < 21 && !found; ++k) {
        auto v = as_vector(w);
        reference_group(v, idx, s.bits, s.symmetric, false, 1.0f - 0.5f * static_cast<float>(k) / 20.0f);
        found = std::all_of(idx.begin(), idx.end(), [&](std::size_t i) { return v[i] == q.data()[i]; });
      }
      CHECK(found);
    }
  }
}

TEST_CASE("KV per-token: groups of g channels along head_dim inside each head, a shorter last group") {
  const int heads = 3, hd = 8;
  const qroar::tensor rows = gaussian(5, heads * hd, 21);
  for (int g : {4, 3, 8}) {
    for (bool sym : {true, false}) {
      CAPTURE(g);
      CAPTURE(sym);
      qroar::tensor q = rows;
      qroar::quantize_per_token(q, hd, g, 4, sym);
      auto ref = as_vector(rows);
      for (std::size_t t = 0; t < 5; ++t)
        for (std::size_t h = 0; h < static_cast<std::size_t>(heads); ++h)
          for (std::size_t c0 = 0; c0 < static_cast<std::size_t>(hd); c0 += static_cast<std::size_t>(g)) {
            std::vector<std::size_t> idx;
            for (std::size_t c = c0; c < std::min<std::size_t>(hd, c0 + static_cast<std::size_t>(g)); ++c)
              idx.push_back(t * heads * hd + h * hd + c);
            reference_group(ref, idx, 4, sym);
          }
      CHECK(as_vector(q) == ref);
    }
  }
}

TEST_CASE("KV per-channel: groups of g positions aligned to multiples of g from the block's first position") {
  const qroar::tensor rows = gaussian(11, 6, 31);
  for (int first : {0, 5, 8}) {
    CAPTURE(first);
    qroar::tensor q = rows;
    qroar::quantize_per_channel(q, first, 4, 3, false);
    auto ref = as_vector(rows);
    for (std::size_t c = 0; c < 6; ++c) {
      std::vector<std::size_t> idx;
      for (int t = 0; t < 11; ++t) {
        idx.push_back(static_cast<std::size_t>(t) * 6 + c);
        const bool group_ends = (first + t + 1) % 4 == 0 || t == 10;
        if (group_ends) {
          reference_group(ref, idx, 3, false);
          idx.clear();
        }
      }
    }
    CHECK(as_vector(q) == ref);
  }
}

TEST_CASE("make_quant_hooks puts K before or after RoPE as the spec says, V only when it has bits, activations on q/k") {
  qroar::llama_config c;
  c.dim = 16;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  auto hooks = [&](const char* spec) { return qroar::make_quant_hooks(qroar::parse_quant_spec(spec), c); };
  const auto post = hooks("kv:k4:token:g8:post-rope");
  CHECK(static_cast<bool>(post.k_post_rope));
  CHECK_FALSE(static_cast<bool>(post.k_pre_rope));
  CHECK_FALSE(static_cast<bool>(post.v));
  CHECK_FALSE(static_cast<bool>(post.q_post_rope));
  const auto pre = hooks("kv:k4v2:token:g8:pre-rope");
  CHECK(static_cast<bool>(pre.k_pre_rope));
  CHECK_FALSE(static_cast<bool>(pre.k_post_rope));
  CHECK(static_cast<bool>(pre.v));
  const auto act = hooks("act:q8k8:token:g8");
  CHECK(static_cast<bool>(act.q_post_rope));
  CHECK(static_cast<bool>(act.k_post_rope));
  CHECK_FALSE(static_cast<bool>(act.v));
  CHECK_FALSE(hooks("rtn:w4:g32:sym").any());
  // the hook quantizes per token and head along head_dim (hd = 8 here): the same as quantize_per_token
  qroar::tensor rows = gaussian(3, 16, 41), expected = rows;
  post.k_post_rope(0, 0, rows);
  qroar::quantize_per_token(expected, 8, 8, 4, true);
  CHECK(as_vector(rows) == as_vector(expected));
}
