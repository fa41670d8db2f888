// The same gutenberg-3m weights stored as llama2.c .bin (interleaved), Hugging Face safetensors (half-split rows)
// and GGUF give the same logits; stories260K .bin and .gguf too.
#include <doctest/doctest.h>

#include <qroar/io/load_model.hpp>
#include <qroar/model/forward.hpp>

#include "shared_data.hpp"

namespace {
// The three files hold bit-identical weights up to a row permutation; the forward pass then differs only in the
// order of the per-pair products inside q.k (layouts) and in GEMM blocking: float rounding of O(dim) terms.
constexpr float three_formats_logit_abs_tol = 1e-4f;
}  // namespace

TEST_CASE("gutenberg-3m: .bin, HF folder and GGUF give the same logits") {
  const auto bin = qroar_test::shared_file("data/models/gutenberg-3m/model.bin");
  if (bin.empty()) return;
  const auto a = qroar::load_model(bin.string());
  const auto b = qroar::load_model(qroar_test::shared_file("data/models/gutenberg-3m/hf").string());
  const auto c = qroar::load_model(qroar_test::shared_file("data/models/gutenberg-3m/model-f32.gguf").string());
  CHECK(a.config.layout == qroar::pair_layout::interleaved);
  CHECK(b.config.layout == qroar::pair_layout::half_split);
  CHECK(c.config.layout == qroar::pair_layout::interleaved);
  CHECK(a.config.original_ctx == 256);
  CHECK(c.config.original_ctx == 256);
  std::vector<int> tokens;
  for (int i = 0; i < 300; ++i) tokens.push_back((i * 37 + 5) % 2048);
  const auto sc = qroar::rope_scaling::yarn(4.0, 256);
  const auto la = qroar::forward_logits(a, tokens, qroar::rope_table::for_positions(a.config.rope_geometry(), sc, 300));
  const auto lb = qroar::forward_logits(b, tokens, qroar::rope_table::for_positions(b.config.rope_geometry(), sc, 300));
  const auto lc = qroar::forward_logits(c, tokens, qroar::rope_table::for_positions(c.config.rope_geometry(), sc, 300));
  CHECK((la - lb).cwiseAbs().maxCoeff() <= three_formats_logit_abs_tol);
  CHECK((la - lc).cwiseAbs().maxCoeff() <= three_formats_logit_abs_tol);
  MESSAGE("max |logit| difference: bin vs HF " << (la - lb).cwiseAbs().maxCoeff() << ", bin vs GGUF "
                                                << (la - lc).cwiseAbs().maxCoeff());
}

TEST_CASE("stories260K: .bin and .gguf hold the same weights and give identical logits") {
  const auto bin = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  if (bin.empty()) return;
  const auto a = qroar::load_model(bin.string());
  const auto c = qroar::load_model(qroar_test::shared_file("data/models/stories260K/stories260K.gguf").string());
  CHECK(a.token_embedding == c.token_embedding);
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    CHECK(a.layers[l].wq == c.layers[l].wq);
    CHECK(a.layers[l].wk == c.layers[l].wk);
    CHECK(a.layers[l].w2 == c.layers[l].w2);
  }
  const std::vector<int> tokens = {1, 403, 407, 261, 378, 432};
  const auto t = qroar::rope_table::for_positions(a.config.rope_geometry(), qroar::rope_scaling::none(), 6);
  CHECK(qroar::forward_logits(a, tokens, t) == qroar::forward_logits(c, tokens, t));
}
