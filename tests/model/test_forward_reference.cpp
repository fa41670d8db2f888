// The forward pass against ../shared/reference/stories260K_forward.json: an independent float64 numpy forward
// pass of stories260K.bin (interleaved RoPE, theta 10000, trained context 512) with default/linear/NTK/YaRN RoPE.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <numeric>

#include <qroar/io/llama2c.hpp>
#include <qroar/model/forward.hpp>
#include <qroar/model/perplexity.hpp>

#include "shared_data.hpp"

namespace {

// Tolerances stated by the reference (its `about`): mean NLL 1e-4 relative in float32, logits 1e-3 absolute.
constexpr double reference_mean_nll_rel_tol = 1e-4;
constexpr double reference_logit_abs_tol = 1e-3;

qroar::rope_scaling scaling_of(const nlohmann::json& c) {
  const auto type = qroar::rope_type_from_string(c.at("rope_type").get<std::string>());
  qroar::rope_scaling sc;
  sc.type = type;
  sc.factor = c.at("factor").get<double>();
  sc.original_ctx = c.at("original_max_position_embeddings").get<int>();
  return sc;
}

}  // namespace

TEST_CASE("stories260K fp32 forward pass matches the independent reference") {
  const auto ref_path = qroar_test::shared_file("reference/stories260K_forward.json");
  if (ref_path.empty()) return;
  std::ifstream in(ref_path);
  const auto doc = nlohmann::json::parse(in);
  const auto model = qroar::load_llama2c(qroar_test::shared_file("data/models/stories260K/stories260K.bin").string());
  int checked = 0;
  for (const auto& c : doc.at("cases")) {
    if (c.at("weights").get<std::string>() != "fp32") continue;
    const std::string name = c.at("name").get<std::string>();
    CAPTURE(name);
    const auto tokens = c.at("token_ids").get<std::vector<int>>();
    const auto sc = scaling_of(c);
    const int n = static_cast<int>(tokens.size());
    const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), sc, n);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      const auto nll = qroar::window_nll(model, tokens, table, threads);
      const double mean = std::accumulate(nll.begin(), nll.end(), 0.0) / static_cast<double>(nll.size());
      CHECK(mean == doctest::Approx(c.at("expected_mean_nll").get<double>()).epsilon(reference_mean_nll_rel_tol));
    }
    const std::vector<int> prefix(tokens.begin(), tokens.begin() + 4);
    // logits of the first 4 positions only depend on the first 4 tokens (causality)
    const auto logits = qroar::forward_logits(model, prefix, table);
    const auto expected = c.at("expected_logits_first4_positions_first16").get<std::vector<std::vector<double>>>();
    for (int t = 0; t < 4; ++t)
      for (int v = 0; v < 16; ++v)
        CHECK(std::abs(logits(t, v) - expected[static_cast<std::size_t>(t)][static_cast<std::size_t>(v)]) <=
              reference_logit_abs_tol);
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("batched prefill equals token-by-token decoding with the KV cache") {
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  const std::vector<int> tokens = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(),
                                                      qroar::rope_scaling::yarn(2.0, 512), 64);
  qroar::kv_cache batch_cache(model.config, 64), step_cache(model.config, 64);
  const auto batch = qroar::forward_hidden(model, tokens, batch_cache, table, 2);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const auto h = qroar::forward_hidden(model, {tokens[t]}, step_cache, table, 1);
    // Same arithmetic up to GEMM blocking and summation order: float rounding of O(dim) terms.
    const float tol = 64 * std::numeric_limits<float>::epsilon() * (1.0f + batch.row(static_cast<Eigen::Index>(t)).cwiseAbs().maxCoeff());
    CHECK((h.row(0) - batch.row(static_cast<Eigen::Index>(t))).cwiseAbs().maxCoeff() <= tol);
  }
  CHECK(step_cache.length == 16);
}

TEST_CASE("results do not depend on the thread count") {
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  std::vector<int> tokens(300);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int>((i * 37 + 11) % 512);
  const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), qroar::rope_scaling::none(), 300);
  const auto a = qroar::window_nll(model, tokens, table, 1);
  const auto b = qroar::window_nll(model, tokens, table, 2);
  const auto c = qroar::window_nll(model, tokens, table, 3);
  CHECK(a == b);
  CHECK(a == c);
}

TEST_CASE("the row-chunked FFN of long windows equals the whole-window FFN bit for bit") {
  // Windows of at least detail::ffn_chunked_from tokens without FFN hooks run the FFN in row chunks; a no-op
  // ffn_input hook forces the whole-window path. Lengths around the chunk size and the threshold, odd tails.
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  qroar::forward_hooks whole;
  whole.ffn_input = [](int, int, qroar::tensor&) {};
  for (int n : {255, 256, 257, 300, 511}) {
    CAPTURE(n);
    std::vector<int> tokens(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int>((i * 53 + 5) % 512);
    const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), qroar::rope_scaling::none(), n);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      CHECK(qroar::window_nll(model, tokens, table, threads) == qroar::window_nll(model, tokens, table, threads, &whole));
    }
  }
}

TEST_CASE("perplexity windows: non-overlapping and strided scoring") {
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  std::vector<int> stream(1000);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int>((i * 101 + 7) % 512);
  qroar::perplexity_options o;
  o.ctx = 256;
  auto r = qroar::evaluate_perplexity(model, stream, o);
  CHECK(r.windows == 3);
  CHECK(r.tokens_scored == 3 * 255);
  CHECK(r.ppl == doctest::Approx(std::exp(r.mean_nll)));
  long long bucket_tokens = 0;
  for (const auto& b : r.per_position) bucket_tokens += b.count;
  CHECK(bucket_tokens == r.tokens_scored);
  o.stride = 128;
  r = qroar::evaluate_perplexity(model, stream, o);
  CHECK(r.windows == 6);                        // starts 0,128,...,640 (640+256 <= 1000)
  CHECK(r.tokens_scored == 255 + 5 * 128);      // first window all, then only the new tokens
  o.max_windows = 2;
  CHECK(qroar::evaluate_perplexity(model, stream, o).windows == 2);
  o.ctx = 2000;
  CHECK_THROWS_AS(qroar::evaluate_perplexity(model, stream, o), qroar::invalid_argument);
  o.ctx = 256;
  o.stride = 300;
  CHECK_THROWS_AS(qroar::evaluate_perplexity(model, stream, o), qroar::invalid_argument);
}
