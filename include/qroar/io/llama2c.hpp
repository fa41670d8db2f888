// SPDX-License-Identifier: MIT
// llama2.c legacy ("version 0") checkpoints: reader and writer.
//
// Layout (karpathy/llama2.c export.py legacy_export, run.c memory_map_weights), all little-endian:
//
//   header  7 x int32   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//                       (vocab_size < 0: the classifier is not tied and is stored at the end as wcls)
//   float32 arrays, row-major (out_features, in_features):
//     token_embedding_table (vocab, dim)
//     rms_att_weight (L, dim)   wq (L, dim, dim)   wk (L, kv_dim, dim)   wv (L, kv_dim, dim)   wo (L, dim, dim)
//     rms_ffn_weight (L, dim)   w1 (L, hidden, dim)   w2 (L, dim, hidden)   w3 (L, hidden, dim)
//     rms_final_weight (dim)
//     freq_cis_real (seq_len, head_dim/2)   freq_cis_imag (seq_len, head_dim/2)   (unused by run.c; skipped)
//     wcls (vocab, dim)                                                             (only when vocab_size < 0)
//
// RoPE pairs are interleaved (x[2j], x[2j+1]); the base is 10000 (run.c hard-codes it), RMSNorm eps 1e-5.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "../detail/model_io.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "../model/qk_layout.hpp"
#include "atomic_write.hpp"
#include "mapped_file.hpp"

namespace qroar {
inline namespace v0 {

// The 28-byte header, as stored.
struct llama2c_header {
  std::int32_t dim = 0;
  std::int32_t hidden_dim = 0;
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;
  std::int32_t n_kv_heads = 0;
  std::int32_t vocab_size = 0;  // negative: untied classifier stored last
  std::int32_t seq_len = 0;     // trained context (L0)
};

inline constexpr std::uint64_t llama2c_header_bytes = 28;

// Largest accepted header values: a file claiming more is rejected before any size arithmetic
// (the same caps as llama_config::problem(), plus one for seq_len).
inline constexpr std::int32_t llama2c_max_dim = 1 << 20;
inline constexpr std::int32_t llama2c_max_hidden_dim = 1 << 22;
inline constexpr std::int32_t llama2c_max_layers = 4096;
inline constexpr std::int32_t llama2c_max_heads = 4096;
inline constexpr std::int32_t llama2c_max_vocab = 1 << 24;
inline constexpr std::int32_t llama2c_max_seq_len = 1 << 24;

// Largest |stored - recomputed| freq_cis entry for which the writer keeps the source file's table (see
// write_llama2c): 4 float32 ulps at 1. PyTorch's float32 cos/sin differ from a correctly rounded one by 1 ulp.
inline constexpr double llama2c_freq_cis_tolerance = 4.0 / 16777216.0;

namespace detail {
namespace llama2c_io {

// Names are built on demand: a header claiming 4096 layers lists 36 000 arrays, and hostile headers are common.
struct entry {
  const char* base = "";
  int layer = -1;  // -1: not a per-layer array
  std::uint64_t rows = 0, cols = 0;
  std::uint64_t offset = 0;  // byte offset in the file
  std::uint64_t bytes() const noexcept { return rows * cols * 4; }
  std::string name() const { return layer < 0 ? std::string(base) : std::string(base) + "[" + std::to_string(layer) + "]"; }
};

inline const char* field_name(int i) noexcept {
  static const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  return names[i];
}

// Validates the header and lists every array with its byte offset. Throws format_error (offset = the header
// field) for impossible values. `end` receives the exact file size the header implies.
// With list = false only `end` is computed (the size checks of detection need no array list).
inline std::vector<entry> plan(const llama2c_header& h, const std::string& file, std::uint64_t& end, bool list = true) {
  const std::int32_t fields[7] = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len};
  const std::int32_t caps[7] = {llama2c_max_dim, llama2c_max_hidden_dim, llama2c_max_layers, llama2c_max_heads,
                                llama2c_max_heads, llama2c_max_vocab, llama2c_max_seq_len};
  for (int i = 0; i < 7; ++i) {
    const std::int64_t v = fields[i];
    const std::int64_t mag = i == 5 ? (v < 0 ? -v : v) : v;  // vocab_size may be negative
    const auto off = static_cast<std::uint64_t>(4 * i);
    if (mag <= 0)
      throw format_error(file, "", off, std::string("llama2.c header field ") + field_name(i) + " = " + std::to_string(v) +
                                            (i == 5 ? " must be non-zero" : " must be positive"));
    if (mag > caps[i])
      throw format_error(file, "", off, std::string("llama2.c header field ") + field_name(i) + " = " + std::to_string(v) +
                                            " exceeds the limit " + std::to_string(caps[i]));
  }
  if (h.dim % h.n_heads != 0)
    throw format_error(file, "", 12, "llama2.c header: dim " + std::to_string(h.dim) + " is not a multiple of n_heads " +
                                         std::to_string(h.n_heads));
  if (h.n_kv_heads > h.n_heads || h.n_heads % h.n_kv_heads != 0)
    throw format_error(file, "", 16, "llama2.c header: n_heads " + std::to_string(h.n_heads) +
                                         " is not a multiple of n_kv_heads " + std::to_string(h.n_kv_heads));
  const std::uint64_t head_dim = static_cast<std::uint64_t>(h.dim / h.n_heads);
  if (head_dim % 2 != 0)
    throw format_error(file, "", 12, "llama2.c header: head_dim " + std::to_string(head_dim) + " must be even");

  const std::uint64_t dim = static_cast<std::uint64_t>(h.dim), hidden = static_cast<std::uint64_t>(h.hidden_dim);
  const std::uint64_t vocab = static_cast<std::uint64_t>(h.vocab_size < 0 ? -static_cast<std::int64_t>(h.vocab_size) : h.vocab_size);
  const std::uint64_t kv_dim = static_cast<std::uint64_t>(h.n_kv_heads) * head_dim;
  const std::uint64_t seq = static_cast<std::uint64_t>(h.seq_len);

  std::vector<entry> out;
  if (list) out.reserve(static_cast<std::size_t>(h.n_layers) * 9 + 5);
  std::uint64_t offset = llama2c_header_bytes;
  auto add = [&](const char* name, std::uint64_t rows, std::uint64_t cols, int layer = -1) {
    std::uint64_t n = 0, bytes = 0, next = 0;
    const entry e{name, layer, rows, cols, offset};
    if (!model_io::checked_mul(rows, cols, n) || !model_io::checked_mul(n, 4, bytes) ||
        !model_io::checked_add(offset, bytes, next))
      throw format_error(file, e.name(), offset, "llama2.c header implies a size that overflows 64 bits");
    if (list) out.push_back(e);
    offset = next;
  };
  add("token_embedding_table", vocab, dim);
  const auto L = static_cast<int>(h.n_layers);
  for (int l = 0; l < L; ++l) add("rms_att_weight", 1, dim, l);
  for (int l = 0; l < L; ++l) add("wq", dim, dim, l);
  for (int l = 0; l < L; ++l) add("wk", kv_dim, dim, l);
  for (int l = 0; l < L; ++l) add("wv", kv_dim, dim, l);
  for (int l = 0; l < L; ++l) add("wo", dim, dim, l);
  for (int l = 0; l < L; ++l) add("rms_ffn_weight", 1, dim, l);
  for (int l = 0; l < L; ++l) add("w1", hidden, dim, l);
  for (int l = 0; l < L; ++l) add("w2", dim, hidden, l);
  for (int l = 0; l < L; ++l) add("w3", hidden, dim, l);
  add("rms_final_weight", 1, dim);
  add("freq_cis_real", seq, head_dim / 2);
  add("freq_cis_imag", seq, head_dim / 2);
  if (h.vocab_size < 0) add("wcls", vocab, dim);
  end = offset;
  return out;
}

// The RoPE table of llama2.c model.py precompute_freqs_cis, in its float32 arithmetic:
// freq_i = 1 / theta^((2i)/hd), angle = t * freq_i (float32), then cos / sin rounded to float32.
// out: (seq_len, hd/2) real part followed by (seq_len, hd/2) imaginary part.
inline std::vector<float> freq_cis_table(int head_dim, int seq_len, double theta) {
  const int half = head_dim / 2;
  std::vector<float> out(static_cast<std::size_t>(2) * static_cast<std::size_t>(seq_len) * static_cast<std::size_t>(half));
  const std::size_t imag = out.size() / 2;
  const float theta_f = static_cast<float>(theta);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float freq = 1.0f / std::pow(theta_f, exponent);
    for (int t = 0; t < seq_len; ++t) {
      const float angle = static_cast<float>(t) * freq;
      const std::size_t k = static_cast<std::size_t>(t) * static_cast<std::size_t>(half) + static_cast<std::size_t>(i);
      out[k] = static_cast<float>(std::cos(static_cast<double>(angle)));
      out[imag + k] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return out;
}

inline void expect_shape(const tensor& t, Eigen::Index rows, Eigen::Index cols, const std::string& name) {
  if (t.rows() != rows || t.cols() != cols)
    throw invalid_argument("model tensor '" + name + "' has shape (" + std::to_string(t.rows()) + ", " +
                           std::to_string(t.cols()) + "), expected (" + std::to_string(rows) + ", " +
                           std::to_string(cols) + ")");
}

inline void expect_size(const vector& v, Eigen::Index n, const std::string& name) {
  if (v.size() != n)
    throw invalid_argument("model tensor '" + name + "' has " + std::to_string(v.size()) + " elements, expected " +
                           std::to_string(n));
}

inline bool same_bits(const float* a, const float* b, Eigen::Index n) noexcept {
  return n == 0 || std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(float)) == 0;
}

}  // namespace llama2c_io
}  // namespace detail

// Reads the raw header fields (no validation beyond the file being long enough).
// Throws unsupported for the llama2.c version-1/2 exports (magic "ak42"), which are not read.
inline llama2c_header read_llama2c_header(const mapped_file& file) {
  const std::uint8_t* p = file.range(0, llama2c_header_bytes, "", "llama2.c header");
  if (detail::model_io::read_u32_le(p) == 0x616b3432u)
    throw unsupported(file.path() + ": a llama2.c version-1/2 export (magic \"ak42\"); only the legacy version-0 layout is read");
  llama2c_header h;
  std::int32_t* fields[7] = {&h.dim, &h.hidden_dim, &h.n_layers, &h.n_heads, &h.n_kv_heads, &h.vocab_size, &h.seq_len};
  for (int i = 0; i < 7; ++i) *fields[i] = detail::model_io::read_i32_le(p + 4 * i);
  return h;
}

// The exact file size the header implies. Throws format_error for impossible headers.
inline std::uint64_t llama2c_file_size(const llama2c_header& header, const std::string& file = "") {
  std::uint64_t end = 0;
  detail::llama2c_io::plan(header, file, end, false);
  return end;
}

// True when `path` is a regular file whose header is a valid llama2.c version-0 header and whose size is exactly
// what the header implies. Never throws.
inline bool is_llama2c_file(const std::string& path) noexcept {
  try {
    const mapped_file file(path);
    if (file.size() < llama2c_header_bytes) return false;
    return llama2c_file_size(read_llama2c_header(file), path) == file.size();
  } catch (...) {
    return false;
  }
}

// Loads a llama2.c version-0 checkpoint. The result has layout interleaved, original_ctx = seq_len,
// rope_theta 10000, norm_eps 1e-5, source_format "llama2c"; output is empty when the classifier is tied.
// Errors: io_error (cannot open), format_error (bad header, truncated or oversized file; names the array and
// its byte offset), unsupported (version-1/2 export, big-endian host), numeric_error (a NaN or infinite weight;
// names the array and the element).
inline llama_model load_llama2c(const std::string& path) {
  namespace io = detail::llama2c_io;
  detail::model_io::require_little_endian_host(path);
  const mapped_file file(path);
  const llama2c_header h = read_llama2c_header(file);
  std::uint64_t end = 0;
  io::plan(h, path, end, false);
  if (file.size() < end) {
    for (const auto& e : io::plan(h, path, end))
      if (e.offset + e.bytes() > file.size())
        throw format_error(path, e.name(), e.offset,
                           "truncated: the array of " + std::to_string(e.bytes()) + " bytes runs past the end of the file (" +
                               std::to_string(file.size()) + " bytes; the header implies " + std::to_string(end) + ")");
  }
  if (file.size() > end)
    throw format_error(path, "", end, std::to_string(file.size() - end) + " unexpected bytes after the last array (the header implies " +
                                          std::to_string(end) + " bytes)");
  const std::vector<io::entry> plan = io::plan(h, path, end);

  llama_model m;
  llama_config& c = m.config;
  c.architecture = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.vocab_size = h.vocab_size < 0 ? -h.vocab_size : h.vocab_size;
  c.head_dim = h.dim / h.n_heads;
  c.rotary_dim = 0;
  c.rope_theta = 10000.0;
  c.layout = pair_layout::interleaved;
  c.original_ctx = h.seq_len;
  c.max_position_embeddings = h.seq_len;
  c.norm_eps = 1e-5f;
  c.tied_embeddings = h.vocab_size > 0;
  c.rope = rope_scaling::none();
  c.validate_loaded(path, 0);  // the 7 x int32 header

  std::size_t next = 0;
  auto take_matrix = [&](tensor& t) {
    const io::entry& e = plan[next++];
    t.resize(static_cast<Eigen::Index>(e.rows), static_cast<Eigen::Index>(e.cols));
    std::memcpy(t.data(), file.range(e.offset, e.bytes(), e.name()), e.bytes());
    file.evict(e.offset, e.bytes());  // the copy replaces the file pages
    detail::model_io::check_finite(t.data(), e.rows, e.cols, path, e.name());
  };
  auto take_vector = [&](vector& v) {
    const io::entry& e = plan[next++];
    v.resize(static_cast<Eigen::Index>(e.cols));
    std::memcpy(v.data(), file.range(e.offset, e.bytes(), e.name()), e.bytes());
    file.evict(e.offset, e.bytes());
    detail::model_io::check_finite(v.data(), 1, e.cols, path, e.name());
  };
  take_matrix(m.token_embedding);
  m.layers.resize(static_cast<std::size_t>(h.n_layers));
  for (auto& l : m.layers) take_vector(l.attn_norm);
  for (auto& l : m.layers) take_matrix(l.wq);
  for (auto& l : m.layers) take_matrix(l.wk);
  for (auto& l : m.layers) take_matrix(l.wv);
  for (auto& l : m.layers) take_matrix(l.wo);
  for (auto& l : m.layers) take_vector(l.ffn_norm);
  for (auto& l : m.layers) take_matrix(l.w1);
  for (auto& l : m.layers) take_matrix(l.w2);
  for (auto& l : m.layers) take_matrix(l.w3);
  take_vector(m.final_norm);
  next += 2;  // freq_cis_real, freq_cis_imag: run.c recomputes RoPE, so do we
  if (h.vocab_size < 0) take_matrix(m.output);
  m.source_path = path;
  m.source_format = "llama2c";
  return m;
}

struct llama2c_write_options {
  // Re-read the temporary file with load_llama2c and compare every array bit for bit before renaming it into place.
  bool verify = true;
  // When the model was loaded from a llama2.c file with the same head_dim and seq_len whose stored freq_cis table
  // agrees with the recomputed one to within llama2c_freq_cis_tolerance, write the stored table (so that
  // load + write reproduces the file byte for byte). Otherwise the table is recomputed from rope_theta.
  bool keep_source_freq_cis = true;
};

// Writes `model` as a llama2.c version-0 checkpoint through atomic_file_writer. W_Q / W_K rows are permuted to the
// interleaved layout when the model is half_split. seq_len = config.original_ctx (else max_position_embeddings).
// Refuses (invalid_argument) to overwrite model.source_path. Throws unsupported for what the format cannot
// hold: head_dim * n_heads != dim, partial rotary, a RoPE scaling, rope_theta != 10000 or norm_eps != 1e-5
// (run.c hard-codes both); numeric_error for non-finite weights; invalid_argument for inconsistent shapes.
inline void write_llama2c(const llama_model& model, const std::string& path, const llama2c_write_options& options = {}) {
  namespace io = detail::llama2c_io;
  detail::model_io::require_little_endian_host(path);
  const llama_config& c = model.config;
  c.validate(path);
  const int hd = c.head_size();
  if (static_cast<long long>(hd) * c.n_heads != c.dim)
    throw unsupported(path + ": llama2.c needs head_dim * n_heads == dim (got " + std::to_string(hd) + " * " +
                      std::to_string(c.n_heads) + " vs " + std::to_string(c.dim) + ")");
  if (c.rotary_dim != 0 && c.rotary_dim != hd) throw unsupported(path + ": llama2.c has no partial rotary embedding");
  if (c.rope.type != rope_type::none) throw unsupported(path + ": llama2.c cannot record a RoPE scaling");
  if (c.rope_theta != 10000.0)
    throw unsupported(path + ": llama2.c run.c hard-codes rope_theta 10000, the model has " + std::to_string(c.rope_theta));
  if (c.norm_eps != 1e-5f) throw unsupported(path + ": llama2.c run.c hard-codes norm_eps 1e-5");
  const int seq_len = c.original_ctx > 0 ? c.original_ctx : c.max_position_embeddings;
  if (seq_len <= 0 || seq_len > llama2c_max_seq_len)
    throw invalid_argument(path + ": llama2.c needs the trained context (config.original_ctx) in (0, 2^24]");
  if (model.layers.size() != static_cast<std::size_t>(c.n_layers))
    throw invalid_argument(path + ": the model has " + std::to_string(model.layers.size()) + " layers, its config says " +
                           std::to_string(c.n_layers));
  const bool untied = model.output.size() > 0;

  // Shapes and finiteness, before anything is written.
  const Eigen::Index dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size, kv = c.kv_dim();
  io::expect_shape(model.token_embedding, vocab, dim, "token_embedding");
  detail::model_io::check_finite(model.token_embedding.data(), static_cast<std::uint64_t>(vocab), static_cast<std::uint64_t>(dim), "", "token_embedding");
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    const auto& L = model.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    const struct { const tensor* t; Eigen::Index r, k; const char* n; } mats[] = {
        {&L.wq, dim, dim, "wq"}, {&L.wk, kv, dim, "wk"}, {&L.wv, kv, dim, "wv"}, {&L.wo, dim, dim, "wo"},
        {&L.w1, hidden, dim, "w1"}, {&L.w2, dim, hidden, "w2"}, {&L.w3, hidden, dim, "w3"}};
    for (const auto& m : mats) {
      io::expect_shape(*m.t, m.r, m.k, p + m.n);
      detail::model_io::check_finite(m.t->data(), static_cast<std::uint64_t>(m.r), static_cast<std::uint64_t>(m.k), "", p + m.n);
    }
    io::expect_size(L.attn_norm, dim, p + "attn_norm");
    io::expect_size(L.ffn_norm, dim, p + "ffn_norm");
    detail::model_io::check_finite(L.attn_norm.data(), 1, static_cast<std::uint64_t>(dim), "", p + "attn_norm");
    detail::model_io::check_finite(L.ffn_norm.data(), 1, static_cast<std::uint64_t>(dim), "", p + "ffn_norm");
  }
  io::expect_size(model.final_norm, dim, "final_norm");
  detail::model_io::check_finite(model.final_norm.data(), 1, static_cast<std::uint64_t>(dim), "", "final_norm");
  if (untied) {
    io::expect_shape(model.output, vocab, dim, "output");
    detail::model_io::check_finite(model.output.data(), static_cast<std::uint64_t>(vocab), static_cast<std::uint64_t>(dim), "", "output");
  }

  // RoPE table: recomputed, or the source's when it is the same table up to float rounding.
  std::vector<float> freq = io::freq_cis_table(hd, seq_len, c.rope_theta);
  if (options.keep_source_freq_cis && model.source_format == "llama2c" && !model.source_path.empty()) {
    try {
      const mapped_file src(model.source_path);
      const llama2c_header sh = read_llama2c_header(src);
      std::uint64_t end = 0;
      const auto plan = io::plan(sh, src.path(), end);
      if (end == src.size() && sh.dim / sh.n_heads == hd && sh.seq_len == seq_len) {
        const io::entry* real = nullptr;
        for (const auto& e : plan)
          if (std::strcmp(e.base, "freq_cis_real") == 0) real = &e;
        std::vector<float> stored(freq.size());
        std::memcpy(stored.data(), src.range(real->offset, stored.size() * sizeof(float)), stored.size() * sizeof(float));
        bool close = true;
        for (std::size_t i = 0; i < freq.size() && close; ++i)
          close = std::fabs(static_cast<double>(stored[i]) - static_cast<double>(freq[i])) <= llama2c_freq_cis_tolerance;
        if (close) freq.swap(stored);
      }
    } catch (const error&) {
      // The source is gone or changed: keep the recomputed table.
    }
  }

  std::vector<std::string> inputs;
  if (!model.source_path.empty()) inputs.push_back(model.source_path);
  atomic_file_writer out(path, inputs);
  const std::int32_t header[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                                  untied ? -c.vocab_size : c.vocab_size, seq_len};
  out.write(header, sizeof header);
  auto put = [&](const float* p, Eigen::Index n) { out.write(p, static_cast<std::size_t>(n) * sizeof(float)); };
  const bool permute = c.layout != pair_layout::interleaved;
  auto interleaved = [&](const tensor& w, int heads) {
    return permute_qk_rows(w, heads, hd, c.rotary_dim, c.layout, pair_layout::interleaved);
  };
  put(model.token_embedding.data(), model.token_embedding.size());
  for (const auto& l : model.layers) put(l.attn_norm.data(), l.attn_norm.size());
  for (const auto& l : model.layers) {
    if (permute) {
      const tensor w = interleaved(l.wq, c.n_heads);
      put(w.data(), w.size());
    } else {
      put(l.wq.data(), l.wq.size());
    }
  }
  for (const auto& l : model.layers) {
    if (permute) {
      const tensor w = interleaved(l.wk, c.n_kv_heads);
      put(w.data(), w.size());
    } else {
      put(l.wk.data(), l.wk.size());
    }
  }
  for (const auto& l : model.layers) put(l.wv.data(), l.wv.size());
  for (const auto& l : model.layers) put(l.wo.data(), l.wo.size());
  for (const auto& l : model.layers) put(l.ffn_norm.data(), l.ffn_norm.size());
  for (const auto& l : model.layers) put(l.w1.data(), l.w1.size());
  for (const auto& l : model.layers) put(l.w2.data(), l.w2.size());
  for (const auto& l : model.layers) put(l.w3.data(), l.w3.size());
  put(model.final_norm.data(), model.final_norm.size());
  put(freq.data(), static_cast<Eigen::Index>(freq.size()));
  if (untied) put(model.output.data(), model.output.size());

  std::function<void(const std::string&)> verify;
  if (options.verify) {
    verify = [&](const std::string& temp) {
      const llama_model r = load_llama2c(temp);
      bool same = r.config.dim == c.dim && r.config.hidden_dim == c.hidden_dim && r.config.n_layers == c.n_layers &&
                  r.config.n_heads == c.n_heads && r.config.n_kv_heads == c.n_kv_heads &&
                  r.config.vocab_size == c.vocab_size && r.config.original_ctx == seq_len &&
                  (r.output.size() > 0) == untied;
      auto eq_t = [&](const tensor& a, const tensor& b) {
        return a.rows() == b.rows() && a.cols() == b.cols() && io::same_bits(a.data(), b.data(), a.size());
      };
      auto eq_v = [&](const vector& a, const vector& b) {
        return a.size() == b.size() && io::same_bits(a.data(), b.data(), a.size());
      };
      same = same && eq_t(r.token_embedding, model.token_embedding) && eq_v(r.final_norm, model.final_norm) &&
             (!untied || eq_t(r.output, model.output));
      for (std::size_t l = 0; same && l < model.layers.size(); ++l) {
        const auto& a = r.layers[l];
        const auto& b = model.layers[l];
        same = eq_v(a.attn_norm, b.attn_norm) && eq_v(a.ffn_norm, b.ffn_norm) &&
               eq_t(a.wq, permute ? interleaved(b.wq, c.n_heads) : b.wq) &&
               eq_t(a.wk, permute ? interleaved(b.wk, c.n_kv_heads) : b.wk) && eq_t(a.wv, b.wv) && eq_t(a.wo, b.wo) &&
               eq_t(a.w1, b.w1) && eq_t(a.w2, b.w2) && eq_t(a.w3, b.w3);
      }
      if (!same) throw io_error(path + ": verification failed: the written file does not re-read to the same weights");
    };
  }
  out.commit(verify);
}

}  // namespace v0
}  // namespace qroar
