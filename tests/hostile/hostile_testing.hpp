// Broken-file corpus helpers: a typed error with a stable id is the only acceptable outcome of a hostile input.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <qroar/error.hpp>
#include <qroar/io/gguf.hpp>
#include <qroar/model/llama_weights.hpp>

#include "../io/model_io_testing.hpp"

namespace qroar_hostile {

using qroar_io_test::read_bytes;
using qroar_io_test::temp_dir;
using qroar_io_test::write_bytes;

using bytes = std::vector<std::uint8_t>;

// Stable ids of qroar's error types (qroar/error.hpp).
inline constexpr int invalid_id = 100, gguf_value_type_id = 110, io_id = 200, format_id = 300, unsupported_id = 400,
                     numeric_id = 500;

inline const char* kind_of(const qroar::error& e) {
  if (dynamic_cast<const qroar::format_error*>(&e)) return "format_error";
  if (dynamic_cast<const qroar::invalid_argument*>(&e)) return "invalid_argument";
  if (dynamic_cast<const qroar::io_error*>(&e)) return "io_error";
  if (dynamic_cast<const qroar::unsupported*>(&e)) return "unsupported";
  if (dynamic_cast<const qroar::numeric_error*>(&e)) return "numeric_error";
  return "?";
}

// What a hostile case must produce: the exception class E, its stable id, and text the message must contain
// (the file name, the tensor...). For format_error, `offset` (when >= 0) is the expected byte offset.
struct expected {
  int id;
  std::vector<std::string> mentions;
  std::int64_t offset = -1;
};

// Runs fn and checks that it throws exactly an E (a qroar::error) with the expected id, message prefix
// "[qroar.<kind>.<id>]", mentions and offset. Any other exception fails the case with its message.
template <class E, class F>
void expect_error(const std::string& label, F&& fn, const expected& want) {
  CAPTURE(label);
  bool thrown = false;
  try {
    fn();
  } catch (const qroar::error& e) {
    thrown = true;
    const std::string what = e.what();
    CAPTURE(what);
    CHECK_MESSAGE(dynamic_cast<const E*>(&e) != nullptr, "wrong error class " << kind_of(e));
    CHECK(e.id() == want.id);
    CHECK(what.rfind(std::string("[qroar.") + kind_of(e) + "." + std::to_string(e.id()) + "] ", 0) == 0);
    for (const auto& m : want.mentions) CHECK_MESSAGE(what.find(m) != std::string::npos, "message lacks '" << m << "'");
    if (want.offset >= 0) {
      const auto* fe = dynamic_cast<const qroar::format_error*>(&e);
      REQUIRE(fe != nullptr);
      CHECK(fe->offset() == static_cast<std::uint64_t>(want.offset));
    }
  } catch (const std::exception& e) {
    thrown = true;
    FAIL_CHECK("not a qroar::error: " << e.what());
  }
  CHECK_MESSAGE(thrown, "no error was thrown");
}

inline void put_u32(bytes& b, std::size_t at, std::uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
inline void put_u64(bytes& b, std::size_t at, std::uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
inline void put_f32(bytes& b, std::size_t at, float v) { std::memcpy(b.data() + at, &v, 4); }
inline std::uint64_t get_u64(const bytes& b, std::size_t at) {
  std::uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

// Offsets at which to cut a file of n bytes: every offset of the first `dense` bytes, then `sparse` more
// spread over the rest (always including n - 1).
inline std::vector<std::size_t> cut_points(std::size_t n, std::size_t dense = 256, std::size_t sparse = 64) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < n && i < dense; ++i) cuts.push_back(i);
  if (n > dense) {
    for (std::size_t k = 1; k <= sparse; ++k) cuts.push_back(dense + (n - 1 - dense) * k / sparse);
  }
  return cuts;
}

// dim 8 (or `dim`), 2 heads, 1 KV head, hidden 12, 1 layer, vocab 16, trained context 8; weights k/100 - 0.5.
inline qroar::llama_model tiny_model(bool tied = true, int dim = 8) {
  qroar::llama_model m;
  auto& c = m.config;
  c.dim = dim;
  c.hidden_dim = 12;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 16;
  c.original_ctx = 8;
  c.max_position_embeddings = 8;
  c.tied_embeddings = tied;
  int k = 0;
  auto fill = [&](qroar::tensor& t, int r, int cols) {
    t.resize(r, cols);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>((k++ % 97) / 100.0 - 0.5);
  };
  const int d = dim, kv = dim / 2;
  fill(m.token_embedding, 16, d);
  m.layers.resize(1);
  auto& L = m.layers[0];
  L.attn_norm = qroar::vector::Ones(d);
  fill(L.wq, d, d);
  fill(L.wk, kv, d);
  fill(L.wv, kv, d);
  fill(L.wo, d, d);
  L.ffn_norm = qroar::vector::Ones(d);
  fill(L.w1, 12, d);
  fill(L.w2, d, 12);
  fill(L.w3, 12, d);
  m.final_norm = qroar::vector::Ones(d);
  if (!tied) fill(m.output, 16, d);
  return m;
}

// The tiny model as a llama GGUF: matrices with 32-multiple rows in `type` (else f32), a 16-token SPM vocabulary.
inline qroar::gguf_writer tiny_gguf(const qroar::llama_model& m, qroar::ggml_type type = qroar::ggml_type::f32) {
  using qroar::gguf_value;
  qroar::gguf_writer w;
  const auto& c = m.config;
  w.set("general.architecture", gguf_value::string("llama"));
  w.set("llama.embedding_length", gguf_value::u32(static_cast<std::uint32_t>(c.dim)));
  w.set("llama.feed_forward_length", gguf_value::u32(static_cast<std::uint32_t>(c.hidden_dim)));
  w.set("llama.block_count", gguf_value::u32(static_cast<std::uint32_t>(c.n_layers)));
  w.set("llama.attention.head_count", gguf_value::u32(static_cast<std::uint32_t>(c.n_heads)));
  w.set("llama.attention.head_count_kv", gguf_value::u32(static_cast<std::uint32_t>(c.n_kv_heads)));
  w.set("llama.context_length", gguf_value::u32(8));
  w.set("tokenizer.ggml.model", gguf_value::string("llama"));
  std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
  for (char ch = 'a'; tokens.size() < 16; ++ch) tokens.push_back(std::string(1, ch));
  w.set("tokenizer.ggml.tokens", gguf_value::array_of(tokens));
  w.set("tokenizer.ggml.scores", gguf_value::array_of(std::vector<float>(16, 0.0f)));
  auto add = [&](const std::string& name, const qroar::tensor& t) {
    const qroar::ggml_type ty = t.cols() % 32 == 0 ? type : qroar::ggml_type::f32;
    w.add_tensor_quantized(name, ty, {t.cols(), t.rows()}, t.data());
  };
  auto addv = [&](const std::string& name, const qroar::vector& v) {
    w.add_tensor_quantized(name, qroar::ggml_type::f32, {v.size()}, v.data());
  };
  add("token_embd.weight", m.token_embedding);
  const auto& L = m.layers[0];
  addv("blk.0.attn_norm.weight", L.attn_norm);
  add("blk.0.attn_q.weight", L.wq);
  add("blk.0.attn_k.weight", L.wk);
  add("blk.0.attn_v.weight", L.wv);
  add("blk.0.attn_output.weight", L.wo);
  addv("blk.0.ffn_norm.weight", L.ffn_norm);
  add("blk.0.ffn_gate.weight", L.w1);
  add("blk.0.ffn_down.weight", L.w2);
  add("blk.0.ffn_up.weight", L.w3);
  addv("output_norm.weight", m.final_norm);
  if (m.output.size() > 0) add("output.weight", m.output);
  return w;
}

}  // namespace qroar_hostile
