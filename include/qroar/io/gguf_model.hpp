// SPDX-License-Identifier: MIT
// A llama_model from a GGUF file (llama.cpp naming), over the gguf_file reader of gguf.hpp.
//
//   token_embd.weight (vocab, dim)      blk.N.attn_norm.weight (dim)     blk.N.attn_{q,k,v,output}.weight
//   blk.N.ffn_norm.weight (dim)         blk.N.ffn_{gate,up,down}.weight  output_norm.weight (dim)
//   output.weight (vocab, dim), optional: absent (or bit-identical to token_embd.weight) means tied
//
// GGUF stores a tensor as ne[0] (contiguous, the input dimension) x ne[1] rows, so gguf_file::dequantize gives
// the (out_features, in_features) matrices of llama_model directly. For architecture llama, convert_hf_to_gguf.py
// permutes W_Q / W_K back to interleaved pairs (llama.cpp mode NORMAL, docs/formulas.md §1.3-1.4): layout interleaved.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../detail/model_io.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "../model/qk_layout.hpp"
#include "../quant/llamacpp_recipe.hpp"
#include "../quant/weights.hpp"
#include "gguf.hpp"
#include "llama2c_tokenizer.hpp"
#include "spm_tokenizer.hpp"

namespace qroar {
inline namespace v0 {

struct gguf_load_options {
  // The trained context L0 to record in config.original_ctx; 0 = from the file (rope.scaling.original_context_length,
  // else llama.context_length). llama.context_length is the context the converter declared, which is not always the
  // training context: ggml-org's stories260K.gguf says 2048 for a model trained at 512 (docs/test-data.md).
  int original_ctx = 0;
};

namespace detail {
namespace gguf_model_io {

inline int positive_int(const gguf_file& f, const std::string& key, std::int64_t fallback) {
  const std::int64_t v = f.get_int(key, fallback);
  if (v <= 0 || v > 0x7fffffffLL) {
    if (!f.contains(key)) throw format_error(f.path(), "", 0, "metadata key '" + key + "' is missing");
    throw format_error(f.path(), "", 0, "metadata key '" + key + "' = " + std::to_string(v) + " must be a positive int32");
  }
  return static_cast<int>(v);
}

}  // namespace gguf_model_io
}  // namespace detail

// The YaRN parameters llama.cpp uses for architecture llama whatever the file says (llama-context.cpp: ext_factor 1
// under YaRN, beta_fast 32, beta_slow 1; its llama loader does not read rope.scaling.yarn_* keys).
inline constexpr double llamacpp_yarn_beta_fast = 32.0;
inline constexpr double llamacpp_yarn_beta_slow = 1.0;
inline constexpr double llamacpp_yarn_ext_factor = 1.0;

// qroar's own keys for a scaling llama.cpp runs through other keys (static NTK as llama.rope.freq_base).
inline constexpr const char* gguf_key_qroar_scaling_type = "qroar.rope.scaling.type";
inline constexpr const char* gguf_key_qroar_scaling_factor = "qroar.rope.scaling.factor";
inline constexpr const char* gguf_key_qroar_freq_base_original = "qroar.rope.freq_base_original";

// The llama.rope.freq_base llama.cpp runs static NTK-aware scaling with: b' = b * s^(d/(d-2)), d the rotary
// dimensions (bloc97; docs/formulas.md §2.3; the "ntk" case of rope_vectors.json), rounded to float as GGUF stores it.
inline float gguf_ntk_freq_base(double base, double factor, int rotary_dims) {
  return static_cast<float>(base * std::pow(factor, static_cast<double>(rotary_dims) / (rotary_dims - 2)));
}

// The llama_config of an open GGUF file, from its metadata and tensor infos only (no tensor data is read). Keys
// read ({a} = general.architecture, which must be "llama"):
//   {a}.embedding_length, feed_forward_length, block_count, attention.head_count, attention.head_count_kv
//   (default head_count), attention.key_length (default dim / heads), rope.dimension_count (default head_dim),
//   rope.freq_base (default 10000, as llama.cpp), attention.layer_norm_rms_epsilon (default 1e-5),
//   context_length (max_position_embeddings; also L0 unless overridden), rope.scaling.type / factor /
//   original_context_length / attn_factor (none, linear, yarn -> qroar's yarn-ggml semantics with llama.cpp's betas
//   and ext_factor, which it does not read from a llama file), or the older rope.scale_linear; static NTK from
//   qroar's keys (set_gguf_rope_scaling: rope_theta the original base, checked against rope.freq_base). vocab_size is the row count of token_embd.weight (checked against {a}.vocab_size);
//   tied_embeddings is true when output.weight is absent (llama_model_from_gguf also ties a bit-identical copy).
// Errors: unsupported (another architecture, a rope_freqs tensor, an unknown scaling type), format_error (missing
// keys or token_embd.weight; metadata values no model may have: an inconsistent geometry, a bad RoPE scaling).
inline llama_config llama_config_from_gguf(const gguf_file& f, const gguf_load_options& options = {}) {
  namespace gm = detail::gguf_model_io;
  const std::string arch = f.architecture();
  if (arch != "llama")
    throw unsupported(f.path() + ": GGUF architecture '" + arch + "' is not supported (llama is)");
  const std::string a = arch + ".";
  llama_config c;
  c.architecture = "llama";
  c.dim = gm::positive_int(f, a + "embedding_length", 0);
  c.hidden_dim = gm::positive_int(f, a + "feed_forward_length", 0);
  c.n_layers = gm::positive_int(f, a + "block_count", 0);
  c.n_heads = gm::positive_int(f, a + "attention.head_count", 0);
  c.n_kv_heads = gm::positive_int(f, a + "attention.head_count_kv", c.n_heads);
  c.head_dim = gm::positive_int(f, a + "attention.key_length", c.dim / c.n_heads > 0 ? c.dim / c.n_heads : 1);
  const int n_rot = gm::positive_int(f, a + "rope.dimension_count", c.head_dim);
  c.rotary_dim = n_rot == c.head_dim ? 0 : n_rot;
  c.rope_theta = f.get_float(a + "rope.freq_base", 10000.0);
  c.norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.layout = pair_layout::interleaved;
  const int context = gm::positive_int(f, a + "context_length", 2048);
  c.max_position_embeddings = context;
  const std::int64_t scaling_l0_key = f.get_int(a + "rope.scaling.original_context_length", 0);
  const int scaling_l0 = scaling_l0_key > 0 && scaling_l0_key <= 0x7fffffffLL ? static_cast<int>(scaling_l0_key) : 0;
  c.original_ctx = options.original_ctx > 0 ? options.original_ctx : scaling_l0 > 0 ? scaling_l0 : context;

  // Static NTK recorded by qroar: llama.cpp runs the scaled freq_base; qroar reads the scheme back from its own keys.
  const std::string qroar_type = f.get_string(gguf_key_qroar_scaling_type, "");
  if (!qroar_type.empty()) {
    if (qroar_type != "ntk")
      throw unsupported(f.path() + ": " + gguf_key_qroar_scaling_type + " '" + qroar_type + "' is not supported (ntk is)");
    const double s = f.get_float(gguf_key_qroar_scaling_factor, 0.0);
    const double b = f.get_float(gguf_key_qroar_freq_base_original, 0.0);
    if (!(s > 0.0) || !std::isfinite(s) || !(b > 0.0) || !std::isfinite(b) || n_rot <= 2)
      throw format_error(f.path(), gguf_key_qroar_scaling_factor, 0,
                         "qroar NTK keys need a positive factor and original base, and rope.dimension_count > 2");
    if (static_cast<float>(c.rope_theta) != gguf_ntk_freq_base(b, s, n_rot))
      throw format_error(f.path(), a + "rope.freq_base", 0,
                         "= " + std::to_string(c.rope_theta) + " is not the NTK base " + std::to_string(b) + " * " +
                             std::to_string(s) + "^(d/(d-2)) that " + gguf_key_qroar_freq_base_original +
                             " and " + gguf_key_qroar_scaling_factor + " describe: the file means one thing to "
                             "llama.cpp and another to qroar");
    if ((f.contains(a + "rope.scaling.type") && f.get_string(a + "rope.scaling.type", "none") != "none") ||
        f.contains(a + "rope.scale_linear"))
      throw format_error(f.path(), a + "rope.scaling.type", 0, "is set together with qroar's NTK keys");
    c.rope_theta = b;
    c.rope = rope_scaling::ntk(s);
    c.rope.original_ctx = c.original_ctx;
    c.rope.max_position_embeddings = context;
  }
  std::string type = f.get_string(a + "rope.scaling.type", "none");
  double factor = f.get_float(a + "rope.scaling.factor", 0.0);
  if (f.contains(a + "rope.scale_linear") && !f.contains(a + "rope.scaling.type")) {
    type = "linear";
    factor = f.get_float(a + "rope.scale_linear", 1.0);
  }
  if (type == "linear" && factor > 0.0 && factor != 1.0) {
    c.rope = rope_scaling::linear(factor);
    c.rope.original_ctx = c.original_ctx;
  } else if (type == "yarn") {
    c.rope = rope_scaling::yarn_ggml(factor > 0.0 ? factor : 1.0, c.original_ctx);
    c.rope.attn_factor = f.get_float(a + "rope.scaling.attn_factor", 1.0);
    // llama.cpp reads no rope.scaling.yarn_* key for architecture llama: it runs betas 32 / 1 and ext_factor 1
    // whatever the file says, and so does qroar (older qroar versions wrote those keys).
    c.rope.beta_fast = llamacpp_yarn_beta_fast;
    c.rope.beta_slow = llamacpp_yarn_beta_slow;
    c.rope.ext_factor = llamacpp_yarn_ext_factor;
  } else if (type != "none" && type != "linear") {
    throw unsupported(f.path() + ": rope.scaling.type '" + type + "' is not supported (none, linear, yarn are)");
  }
  if (c.rope.type != rope_type::none) c.rope.max_position_embeddings = context;
  if (f.tensor("rope_freqs.weight"))
    throw unsupported(f.path() + ": tensor 'rope_freqs.weight' (per-pair RoPE frequency factors) is not supported");

  const gguf_tensor_info* emb = f.tensor("token_embd.weight");
  if (!emb) throw format_error(f.path(), "token_embd.weight", 0, "required tensor is missing");
  const std::int64_t vocab = f.get_int(a + "vocab_size", emb->n_rows());
  if (vocab != emb->n_rows() || vocab <= 0 || vocab > 0x7fffffffLL)
    throw format_error(f.path(), "token_embd.weight", emb->info_offset,
                       "has " + std::to_string(emb->n_rows()) + " rows, the vocabulary size is " + std::to_string(vocab));
  c.vocab_size = static_cast<int>(vocab);
  c.tied_embeddings = f.tensor("output.weight") == nullptr;
  c.validate_loaded(f.path());
  return c;
}

// Builds a llama_model from an open GGUF file: the config of llama_config_from_gguf, and every tensor
// dequantized to float (any type gguf_file can dequantize).
// Errors: those of llama_config_from_gguf, unsupported (a type that cannot be dequantized), format_error (missing
// tensors, shapes that disagree with the keys), numeric_error (non-finite weights, naming tensor and element).
inline llama_model llama_model_from_gguf(const gguf_file& f, const gguf_load_options& options = {}) {
  llama_model m;
  m.config = llama_config_from_gguf(f, options);
  llama_config& c = m.config;
  const gguf_tensor_info* out = f.tensor("output.weight");

  auto load = [&](const std::string& name, int rows, int cols) {
    const gguf_tensor_info* info = f.tensor(name);
    if (!info) throw format_error(f.path(), name, 0, "required tensor is missing");
    if (info->ne[0] != cols || info->n_rows() != rows || info->ne[2] != 1 || info->ne[3] != 1)
      throw format_error(f.path(), name, info->info_offset,
                         "shape ne = [" + std::to_string(info->ne[0]) + ", " + std::to_string(info->ne[1]) + ", " +
                             std::to_string(info->ne[2]) + ", " + std::to_string(info->ne[3]) + "], expected [" +
                             std::to_string(cols) + ", " + std::to_string(rows) + "]");
    tensor t = f.dequantize(*info);
    f.evict(*info);  // the copy replaces the file pages
    detail::model_io::check_finite(t.data(), static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), f.path(), name);
    return t;
  };
  auto load_vector = [&](const std::string& name, int n) {
    const tensor t = load(name, 1, n);
    return vector(Eigen::Map<const vector>(t.data(), n));
  };
  const int q = c.q_dim(), kv = c.kv_dim();
  m.token_embedding = load("token_embd.weight", c.vocab_size, c.dim);
  m.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    llama_layer& L = m.layers[static_cast<std::size_t>(l)];
    L.attn_norm = load_vector(p + "attn_norm.weight", c.dim);
    L.wq = load(p + "attn_q.weight", q, c.dim);
    L.wk = load(p + "attn_k.weight", kv, c.dim);
    L.wv = load(p + "attn_v.weight", kv, c.dim);
    L.wo = load(p + "attn_output.weight", c.dim, q);
    L.ffn_norm = load_vector(p + "ffn_norm.weight", c.dim);
    L.w1 = load(p + "ffn_gate.weight", c.hidden_dim, c.dim);
    L.w2 = load(p + "ffn_down.weight", c.dim, c.hidden_dim);
    L.w3 = load(p + "ffn_up.weight", c.hidden_dim, c.dim);
  }
  m.final_norm = load_vector("output_norm.weight", c.dim);
  if (out) {
    m.output = load("output.weight", c.vocab_size, c.dim);
    // Converters often store the tied classifier as its own copy (ggml-org's stories260K.gguf does): a bit-identical
    // output.weight is recorded as tied, the form the llama2.c and HF files of the same model have.
    if (std::memcmp(m.output.data(), m.token_embedding.data(), sizeof(float) * static_cast<std::size_t>(m.output.size())) == 0) {
      m.output.resize(0, 0);
      c.tied_embeddings = true;
    }
  }
  m.source_path = f.path();
  m.source_format = "gguf";
  return m;
}

// Opens `path` with gguf_file::open and builds the model (see llama_model_from_gguf).
inline llama_model load_gguf_model(const std::string& path, const gguf_load_options& options = {}) {
  return llama_model_from_gguf(gguf_file::open(path), options);
}

// The GGUF (llama.cpp "llama" / SPM) form of a llama2.c tokenizer.bin vocabulary, as llama.cpp's converters
// write it: a space becomes U+2581 "▁"; the BOS / EOS pieces that llama2.c's export decorates as "\n<s>\n" and
// "\n</s>\n" are stored bare; token types: id 0 unknown, BOS and EOS control, "<0xAB>" pieces byte, others normal.
// (For stories260K, tok512.bin converted this way equals the vocabulary embedded in stories260K.gguf.)
inline spm_vocabulary spm_vocabulary_from_llama2c(const llama2c_tokenizer& t) {
  spm_vocabulary v;
  const int n = t.vocab_size();
  v.bos_id = t.bos_id() < n ? t.bos_id() : -1;
  v.eos_id = t.eos_id() < n ? t.eos_id() : -1;
  v.unk_id = n > 0 ? 0 : -1;
  for (int id = 0; id < n; ++id) {
    std::string piece;
    for (const char ch : t.piece(id)) piece += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
    auto type = spm_token_type::normal;
    if (id == v.bos_id || id == v.eos_id) {
      type = spm_token_type::control;
      const auto first = piece.find_first_not_of('\n'), last = piece.find_last_not_of('\n');
      if (first != std::string::npos) piece = piece.substr(first, last - first + 1);
    } else if (id == v.unk_id) {
      type = spm_token_type::unknown;
    } else if (detail::byte_piece_value(piece) >= 0) {
      type = spm_token_type::byte;
    }
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(t.score(id));
    v.types.push_back(static_cast<std::int32_t>(type));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// llama_model -> GGUF (llama architecture, GGUF v3, llama.cpp tensor names and keys).

// A GGUF vocabulary of type "gpt2" (byte-level BPE) as llama.cpp reads it (src/llama-vocab.cpp, llama_vocab::load):
//   pre      tokenizer.ggml.pre: llama.cpp's name of the pre-tokenizer ("llama-bpe", "qwen2", "smollm", "gpt-2")
//   tokens   tokenizer.ggml.tokens: the byte-level pieces ("Ġthe"), added tokens as their text ("<|im_end|>")
//   types    tokenizer.ggml.token_type: 1 normal, 3 control, 4 user-defined, 5 unused (llama_token_type)
//   merges   tokenizer.ggml.merges: "left right", by rank
//   bos_id, eos_id   tokenizer.ggml.{bos,eos}_token_id, not written when < 0
//   add_bos, add_eos tokenizer.ggml.add_{bos,eos}_token, not written when unset (llama.cpp then decides by pre)
struct gguf_bpe_vocabulary {
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<std::string> merges;
  int bos_id = -1;
  int eos_id = -1;
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
};

// How write_gguf_model stores each tensor.
//   f32          every tensor float32
//   f16, bf16    every 2-D tensor in that type; 1-D norm weights stay f32 (as convert_hf_to_gguf.py writes them)
//   quantized    the 2-D linear weights (attn_q/k/v/output, ffn_gate/down/up) in ggml_type_for_row(quant_type, ne0):
//                the requested type when the row length is a multiple of its block size, else q8_0, else f32 (the
//                rule that made ../shared's ggml-quantized files); token_embd / output f32 unless
//                quantize_embeddings; norms f32
//   like_source  each tensor in the type the `source` file stores under the same name (f32 for a name it lacks)
// How write_gguf_model stores tensors (the table in docs/formats.md): all f32 / f16 / bf16 (norms f32), quantized
// (linear weights in quant_type, qroar's rule), like_source (the source GGUF's types), llamacpp_recipe (the type
// llama.cpp's quantizer gives each tensor for file type `recipe`: quant/llamacpp_recipe.hpp).
enum class gguf_storage { f32, f16, bf16, quantized, like_source, llamacpp_recipe };

inline const char* to_string(gguf_storage s) noexcept {
  switch (s) {
    case gguf_storage::f32: return "f32";
    case gguf_storage::f16: return "f16";
    case gguf_storage::bf16: return "bf16";
    case gguf_storage::quantized: return "quantized";
    case gguf_storage::like_source: return "like_source";
    case gguf_storage::llamacpp_recipe: return "llamacpp_recipe";
  }
  return "?";
}

struct gguf_export_options {
  gguf_storage storage = gguf_storage::f32;
  ggml_type quant_type = ggml_type::q8_0;  // storage quantized: the type requested for the linear weights
  bool quantize_embeddings = false;        // storage quantized: token_embd / output in ggml_type_for_row too
  llama_file_type recipe = llama_file_type::q4_k_m;  // storage llamacpp_recipe: the llama.cpp file type
  // A GGUF to carry over: its metadata (tokenizer.*, general.* and any other key) is kept, llama.* keys are
  // rewritten from the model, its tensor order is kept, and with like_source its tensor types are used. A tensor
  // whose type and dequantized values equal the model's is copied byte for byte (so untouched tensors of a
  // quantized file are not re-quantized). Must stay open until write_gguf_model returns.
  const gguf_file* source = nullptr;
  // A SentencePiece-style vocabulary to embed as tokenizer.ggml.* (model "llama"); it replaces the source's
  // tokenizer keys. Must have config.vocab_size pieces.
  const spm_vocabulary* vocabulary = nullptr;
  // A byte-level BPE vocabulary to embed as tokenizer.ggml.* (model "gpt2"; io/hf_gguf_vocabulary.hpp builds one
  // from a tokenizer.json); it replaces the source's tokenizer keys. Must have config.vocab_size tokens. At most one
  // of `vocabulary` and `bpe_vocabulary`.
  const gguf_bpe_vocabulary* bpe_vocabulary = nullptr;
  std::string name;  // general.name; empty keeps the source's, else the output file's stem
};

namespace detail {
namespace gguf_export {

// llama.cpp's llama_ftype for general.file_type (llama.h): the "mostly" type of a file.
inline std::uint32_t file_type_of(ggml_type t) {
  switch (t) {
    case ggml_type::f32: return 0;
    case ggml_type::f16: return 1;
    case ggml_type::q4_0: return 2;
    case ggml_type::q4_1: return 3;
    case ggml_type::q8_0: return 7;
    case ggml_type::q5_0: return 8;
    case ggml_type::q5_1: return 9;
    case ggml_type::q2_k: return 10;
    case ggml_type::q3_k: return 12;  // Q3_K_M
    case ggml_type::q4_k: return 14;  // Q4_K_S: every tensor q4_K
    case ggml_type::q5_k: return 16;  // Q5_K_S
    case ggml_type::q6_k: return 18;
    case ggml_type::bf16: return 32;
    default: return 0;
  }
}

// The main tensor type of a llama_ftype (the K-quant mixes _S/_M/_L by their base type), or nothing for a value
// qroar does not know.
inline std::optional<ggml_type> main_type_of_file_type(std::uint32_t ftype) {
  switch (ftype) {
    case 0: return ggml_type::f32;
    case 1: return ggml_type::f16;
    case 2: return ggml_type::q4_0;
    case 3: return ggml_type::q4_1;
    case 7: return ggml_type::q8_0;
    case 8: return ggml_type::q5_0;
    case 9: return ggml_type::q5_1;
    case 10: case 21: return ggml_type::q2_k;
    case 11: case 12: case 13: return ggml_type::q3_k;
    case 14: case 15: return ggml_type::q4_k;
    case 16: case 17: return ggml_type::q5_k;
    case 18: return ggml_type::q6_k;
    case 32: return ggml_type::bf16;
    default: return std::nullopt;
  }
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// The layout llama.cpp's quantizer gives a file it writes from the GGUF `src` (llama-quant.cpp): the source's
// metadata in its order, without keys the source lacks, then general.quantization_version and general.file_type
// moved to the end; tensors ordered by layer (tensors outside blk.N first), by name within a layer (the name order of
// llama.cpp's model loader). With the recipe's tensor bytes this reproduces llama.cpp's file byte for byte.
inline void llamacpp_file_layout(gguf_writer& w, const gguf_file& src) {
  std::vector<std::string> added;
  for (const auto& kv : w.metadata())
    if (!src.contains(kv.first) && kv.first != "general.quantization_version" && kv.first != "general.file_type")
      added.push_back(kv.first);
  for (const auto& k : added) w.remove(k);
  for (const char* key : {"general.quantization_version", "general.file_type"}) {
    if (const gguf_value* v = w.find(key)) {
      const gguf_value keep = *v;
      w.remove(key);
      w.set(key, keep);
    }
  }
  auto layer_of = [](const std::string& name) -> long {
    if (name.compare(0, 4, "blk.") != 0) return -1;
    return std::strtol(name.c_str() + 4, nullptr, 10);
  };
  w.sort_tensors([&](const std::string& a, const std::string& b) {
    const long la = layer_of(a), lb = layer_of(b);
    return la != lb ? la < lb : a < b;
  });
}

}  // namespace gguf_export
}  // namespace detail

// Sets general.file_type to describe the tensors `w` holds. The type llama.cpp would guess for the file (its model
// loader counts the tensors of each type and takes the most frequent one, the first to reach the maximum in file
// order) decides: the file's current value is kept when its main type is that type (so a Q4_K_M mix stays
// Q4_K_M), otherwise it becomes file_type_of(that type). No tensors, or no general.file_type and not
// `add_when_missing`: nothing is changed (llama.cpp then guesses the very same type).
inline void set_gguf_file_type(gguf_writer& w, bool add_when_missing = true) {
  const auto tensors = w.tensor_types();
  if (tensors.empty()) return;
  std::vector<std::pair<ggml_type, int>> counts;
  ggml_type most = tensors.front().second;
  int most_count = 0;
  for (const auto& t : tensors) {
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == t.second; });
    if (it == counts.end()) it = counts.insert(counts.end(), {t.second, 0});
    if (++it->second > most_count) {
      most_count = it->second;
      most = t.second;
    }
  }
  if (const gguf_value* v = w.find("general.file_type")) {
    if (v->type() == gguf_type::uint32 || v->type() == gguf_type::int32) {
      const auto main = detail::gguf_export::main_type_of_file_type(static_cast<std::uint32_t>(v->raw_bits()));
      if (main && *main == most) return;
    }
  } else if (!add_when_missing) {
    return;
  }
  w.set("general.file_type", gguf_value::u32(detail::gguf_export::file_type_of(most)));
}

// Writes the RoPE keys of `config` into `w` so that llama.cpp, run with no flags, uses exactly the scaling qroar
// reads back (removing any older llama.rope.scaling.* / rope.scale_linear / qroar.rope.* keys first):
//   none        no scaling keys
//   linear      rope.scaling.type "linear", factor s, original_context_length L0
//   yarn-ggml   rope.scaling.type "yarn", factor s, original_context_length L0, attn_factor; beta_fast, beta_slow
//               and ext_factor must be llama.cpp's 32 / 1 / 1 (it reads no key for them under architecture llama)
//   yarn (HF)   as yarn-ggml when it has HF's defaults (truncate, no attention_factor / mscale / mscale_all_dim /
//               correction_ctx, betas 32 / 1): both semantics then give the same frequencies and attention factor
//               0.1 ln s + 1 (docs/formulas.md §2.5-2.6); it reads back as yarn-ggml
//   ntk         rope.freq_base = b * s^(d/(d-2)) (what llama.cpp deploys static NTK as), and qroar's own keys
//               qroar.rope.scaling.type "ntk", qroar.rope.scaling.factor s, qroar.rope.freq_base_original b, plus
//               original_context_length L0, so qroar reads the scheme back
// Also writes llama.rope.freq_base (b, or b' for ntk) and llama.context_length: L0 without scaling, round(s * L0)
// with one (the context the file is meant to run at: llama.cpp warns past it and uses it as its default context).
// Throws unsupported for any other scaling (dynamic, llama3, longrope, non-default HF yarn, yarn-ggml with other
// betas or ext_factor), naming what llama.cpp cannot represent.
inline void set_gguf_rope_scaling(gguf_writer& w, const llama_config& c) {
  const rope_scaling& r = c.rope;
  const bool hf_yarn_default = r.type == rope_type::yarn && r.truncate && !r.attention_factor && r.mscale == 0.0 &&
                               r.mscale_all_dim == 0.0 && r.correction_ctx == 0;
  if (r.type == rope_type::yarn_ggml || hf_yarn_default) {
    auto num = [](double v) {
      std::ostringstream o;
      o << v;
      return o.str();
    };
    std::string ignored;
    if (r.beta_fast != llamacpp_yarn_beta_fast) ignored += " beta_fast " + num(r.beta_fast) + " (it uses 32);";
    if (r.beta_slow != llamacpp_yarn_beta_slow) ignored += " beta_slow " + num(r.beta_slow) + " (it uses 1);";
    if (r.type == rope_type::yarn_ggml && r.ext_factor != llamacpp_yarn_ext_factor)
      ignored += " ext_factor " + num(r.ext_factor) + " (it uses 1);";
    if (!ignored.empty())
      throw unsupported("GGUF cannot record this YaRN scaling: llama.cpp ignores rope.scaling.yarn_* keys for "
                        "architecture llama, so the file would run differently there:" +
                        ignored.substr(0, ignored.size() - 1));
  } else if (r.type != rope_type::none && r.type != rope_type::linear && r.type != rope_type::ntk) {
    throw unsupported(std::string("GGUF cannot record the RoPE scaling '") + to_string(r.type) +
                      "' (llama.cpp runs linear, yarn with its default betas, and static ntk as a freq_base; HF yarn "
                      "only with its default parameters)");
  }
  std::vector<std::string> stale;
  for (const auto& kv : w.metadata())
    if (detail::gguf_export::starts_with(kv.first, "llama.rope.scaling.") || kv.first == "llama.rope.scale_linear" ||
        detail::gguf_export::starts_with(kv.first, "qroar.rope."))
      stale.push_back(kv.first);
  for (const auto& k : stale) w.remove(k);
  const int l0 = r.original_ctx > 0 ? r.original_ctx : c.original_ctx > 0 ? c.original_ctx : c.max_position_embeddings;
  auto u32 = [](long v) { return gguf_value::u32(static_cast<std::uint32_t>(v)); };
  auto f32 = [](double v) { return gguf_value::f32(static_cast<float>(v)); };
  w.set("llama.rope.freq_base", f32(c.rope_theta));
  if (l0 > 0) {
    const double context = r.type == rope_type::none ? l0 : std::round(r.factor * l0);
    if (context < 1 || context > 0x7fffffff)
      throw invalid_argument("RoPE scaling x" + std::to_string(r.factor) + " of L0 " + std::to_string(l0) +
                             " gives no valid llama.context_length");
    w.set("llama.context_length", u32(static_cast<long>(context)));
  }
  if (r.type == rope_type::none) return;
  if (l0 > 0) w.set("llama.rope.scaling.original_context_length", u32(l0));
  if (r.type == rope_type::linear) {
    w.set("llama.rope.scaling.type", gguf_value::string("linear"));
    w.set("llama.rope.scaling.factor", f32(r.factor));
  } else if (r.type == rope_type::ntk) {
    const int d = c.rope_geometry().rotary();
    if (d <= 2) throw invalid_argument("RoPE scaling 'ntk' needs rotary_dim > 2 (exponent d/(d-2))");
    w.set("llama.rope.freq_base", gguf_value::f32(gguf_ntk_freq_base(c.rope_theta, r.factor, d)));
    w.set(gguf_key_qroar_scaling_type, gguf_value::string("ntk"));
    w.set(gguf_key_qroar_scaling_factor, gguf_value::f64(r.factor));
    w.set(gguf_key_qroar_freq_base_original, gguf_value::f64(c.rope_theta));
  } else {
    w.set("llama.rope.scaling.type", gguf_value::string("yarn"));
    w.set("llama.rope.scaling.factor", f32(r.factor));
    w.set("llama.rope.scaling.attn_factor", f32(r.type == rope_type::yarn_ggml ? r.attn_factor : 1.0));
  }
}

// Writes `model` as a GGUF v3 file of architecture llama that llama.cpp loads:
//   keys     general.architecture "llama", general.name, llama.{context_length (the trained context L0, or s * L0
//            under a scaling: set_gguf_rope_scaling), embedding_length, feed_forward_length, block_count, attention.head_count,
//            attention.head_count_kv, attention.key_length / value_length (only when head_dim != dim / n_heads),
//            rope.dimension_count, rope.freq_base, attention.layer_norm_rms_epsilon, vocab_size}, the rope scaling
//            of set_gguf_rope_scaling, general.file_type (the storage policy's llama_ftype, or the source's for
//            like_source, unless the tensors written say otherwise: set_gguf_file_type), general.quantization_version 2 when a tensor is quantized, and the tokenizer
//   tensors  token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_down,
//            ffn_up}, output_norm, output (when untied; also when the source stores a copy of a tied classifier);
//            ne = {in_features, out_features}
//   rows     W_Q / W_K in the interleaved pair order llama.cpp's rope mode NORMAL expects (permute_qk_rows when the
//            model is half_split, docs/formulas.md §1.3)
// Storage per tensor: see gguf_storage. Quantization is qroar::quantize_row (ggml's reference quantizers, bit
// exact), so re-reading the file gives exactly ggml_fake_quantize of the model's weights (f16 / bf16: the values
// rounded to nearest even). Written through gguf_writer::write (atomic; refuses to overwrite model.source_path or
// the source file).
// Errors: invalid_argument (shapes inconsistent with the config, a vocabulary of the wrong size, a source of
// another architecture or with a tensor of another shape), unsupported (a scaling GGUF cannot record, a source
// type qroar cannot write), numeric_error (a non-finite weight, or one that overflows f16, naming the tensor).
inline void write_gguf_model(const llama_model& model, const std::string& path, const gguf_export_options& options = {}) {
  namespace ge = detail::gguf_export;
  const llama_config& c = model.config;
  c.validate(path);
  if (model.layers.size() != static_cast<std::size_t>(c.n_layers))
    throw invalid_argument(path + ": the model has " + std::to_string(model.layers.size()) + " layers, its config says " +
                           std::to_string(c.n_layers));
  const gguf_file* src = options.source;
  if (options.storage == gguf_storage::like_source && !src)
    throw invalid_argument("write_gguf_model: storage like_source needs options.source");
  if (src && src->contains("general.architecture") && src->architecture() != "llama")
    throw invalid_argument(src->path() + ": source GGUF has architecture '" + src->architecture() + "', not llama");
  if (options.vocabulary && options.bpe_vocabulary)
    throw invalid_argument("write_gguf_model: both an SPM and a BPE vocabulary given (one tokenizer per file)");
  if (options.storage == gguf_storage::quantized && !ggml_type_is_convertible(options.quant_type))
    throw unsupported(std::string("write_gguf_model: cannot quantize to ggml type ") + to_string(options.quant_type));

  gguf_writer w = src ? gguf_writer::from(*src) : gguf_writer();
  w.set_version(3);
  std::vector<std::string> produced;
  bool any_quantized = false;

  // llama.cpp's recipes tell a tied model (no output.weight in the file) from an untied one.
  const bool writes_output = model.output.size() > 0 || (src && src->tensor("output.weight"));
  const int gqa = c.n_kv_heads > 0 ? c.n_heads / c.n_kv_heads : 1;
  if (options.storage == gguf_storage::llamacpp_recipe) llama_file_type_default(options.recipe);  // validates it
  // The storage type of one tensor (2-D `linear` weights, 2-D embeddings, 1-D norms).
  enum class kind { linear, embedding, norm };
  auto type_for = [&](const std::string& name, kind k, std::int64_t ne0) -> ggml_type {
    switch (options.storage) {
      case gguf_storage::f32: return ggml_type::f32;
      case gguf_storage::f16: return k == kind::norm ? ggml_type::f32 : ggml_type::f16;
      case gguf_storage::bf16: return k == kind::norm ? ggml_type::f32 : ggml_type::bf16;
      case gguf_storage::quantized:
        if (k == kind::linear || (k == kind::embedding && options.quantize_embeddings))
          return ggml_type_for_row(options.quant_type, ne0);
        return ggml_type::f32;
      case gguf_storage::llamacpp_recipe: {
        if (k == kind::norm) return ggml_type::f32;
        if (name == "token_embd.weight" || name == "output.weight")
          return llamacpp_recipe_type(options.recipe, name == "output.weight" ? recipe_role::output
                                                                              : recipe_role::token_embedding,
                                      0, c.n_layers, gqa, ne0, !writes_output);
        // blk.N.<role>.weight
        const auto dot = name.find('.', 4);
        const int layer = std::stoi(name.substr(4, dot - 4));
        const std::string role = name.substr(dot + 1);
        const recipe_role r = role == "attn_q.weight"        ? recipe_role::attn_q
                              : role == "attn_k.weight"      ? recipe_role::attn_k
                              : role == "attn_v.weight"      ? recipe_role::attn_v
                              : role == "attn_output.weight" ? recipe_role::attn_output
                              : role == "ffn_gate.weight"    ? recipe_role::ffn_gate
                              : role == "ffn_down.weight"    ? recipe_role::ffn_down
                                                             : recipe_role::ffn_up;
        return llamacpp_recipe_type(options.recipe, r, layer, c.n_layers, gqa, ne0, !writes_output);
      }
      case gguf_storage::like_source: {
        const gguf_tensor_info* ti = src->tensor(name);
        if (!ti) return ggml_type::f32;
        if (!ggml_type_is_convertible(ti->type))
          throw unsupported(src->path() + ": tensor '" + name + "': qroar cannot write ggml type " + to_string(ti->type));
        return ti->type;
      }
    }
    return ggml_type::f32;
  };

  // Adds rows x cols floats (row-major) as tensor `name` with ne = {cols, rows} (or {cols} for a vector).
  auto add = [&](const std::string& name, kind k, const float* data, Eigen::Index rows, Eigen::Index cols,
                 Eigen::Index want_rows, Eigen::Index want_cols) {
    if (rows != want_rows || cols != want_cols)
      throw invalid_argument("model tensor '" + name + "' has shape (" + std::to_string(rows) + ", " +
                             std::to_string(cols) + "), expected (" + std::to_string(want_rows) + ", " +
                             std::to_string(want_cols) + ")");
    const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(data[i]))
        throw numeric_error(path + ": tensor '" + name + "': element " + std::to_string(i) + " is not finite");
    const std::vector<std::int64_t> ne = k == kind::norm ? std::vector<std::int64_t>{cols}
                                                         : std::vector<std::int64_t>{cols, rows};
    const ggml_type t = type_for(name, k, cols);
    if (ggml_traits(t).block_size > 1) any_quantized = true;
    produced.push_back(name);
    // Keep the source's bytes when they already hold exactly these values in this type.
    if (src) {
      const gguf_tensor_info* ti = src->tensor(name);
      if (ti && ti->type == t && ti->ne[0] == cols && ti->n_rows() == rows && ti->ne[2] == 1 && ti->ne[3] == 1 &&
          ti->n_dims == ne.size() && ggml_type_is_convertible(t)) {
        const tensor stored = src->dequantize(*ti);
        if (n == 0 || std::memcmp(stored.data(), data, n * sizeof(float)) == 0) {
          w.add_tensor_view(name, t, ne, src->tensor_data(*ti), ti->size);
          return;
        }
      }
    }
    if (t == ggml_type::f32) {
      w.add_tensor_quantized(name, t, ne, data);
      return;
    }
    // Every stored value must read back finite (f16 overflows above 65504, and so would a block scale).
    const std::uint64_t row_bytes = ggml_row_size(t, static_cast<std::uint64_t>(cols));
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(row_bytes * static_cast<std::uint64_t>(rows)));
    std::vector<float> back(static_cast<std::size_t>(cols));
    for (Eigen::Index r = 0; r < rows; ++r) {
      std::uint8_t* dst = bytes.data() + static_cast<std::uint64_t>(r) * row_bytes;
      quantize_row(t, data + r * cols, dst, cols);
      dequantize_row(t, dst, back.data(), cols);
      for (Eigen::Index i = 0; i < cols; ++i)
        if (!std::isfinite(back[static_cast<std::size_t>(i)]))
          throw numeric_error(path + ": tensor '" + name + "': row " + std::to_string(r) + ", element " +
                              std::to_string(i) + " overflows " + to_string(t));
    }
    w.add_tensor(name, t, ne, std::move(bytes));
  };
  auto add_matrix = [&](const std::string& name, kind k, const tensor& t, Eigen::Index rows, Eigen::Index cols) {
    add(name, k, t.data(), t.rows(), t.cols(), rows, cols);
  };
  auto add_vector = [&](const std::string& name, const vector& v) {
    add(name, kind::norm, v.data(), 1, v.size(), 1, c.dim);
  };

  const Eigen::Index dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size, q = c.q_dim(), kv = c.kv_dim();
  const bool permute = c.layout != pair_layout::interleaved;
  add_matrix("token_embd.weight", kind::embedding, model.token_embedding, vocab, dim);
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    const llama_layer& L = model.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    add_vector(p + "attn_norm.weight", L.attn_norm);
    if (permute) {
      add_matrix(p + "attn_q.weight", kind::linear,
                 permute_qk_rows(L.wq, c.n_heads, c.head_size(), c.rotary_dim, c.layout, pair_layout::interleaved), q, dim);
      add_matrix(p + "attn_k.weight", kind::linear,
                 permute_qk_rows(L.wk, c.n_kv_heads, c.head_size(), c.rotary_dim, c.layout, pair_layout::interleaved), kv,
                 dim);
    } else {
      add_matrix(p + "attn_q.weight", kind::linear, L.wq, q, dim);
      add_matrix(p + "attn_k.weight", kind::linear, L.wk, kv, dim);
    }
    add_matrix(p + "attn_v.weight", kind::linear, L.wv, kv, dim);
    add_matrix(p + "attn_output.weight", kind::linear, L.wo, dim, q);
    add_vector(p + "ffn_norm.weight", L.ffn_norm);
    add_matrix(p + "ffn_gate.weight", kind::linear, L.w1, hidden, dim);
    add_matrix(p + "ffn_down.weight", kind::linear, L.w2, dim, hidden);
    add_matrix(p + "ffn_up.weight", kind::linear, L.w3, hidden, dim);
  }
  add_vector("output_norm.weight", model.final_norm);
  if (model.output.size() > 0) add_matrix("output.weight", kind::embedding, model.output, vocab, dim);
  else if (src && src->tensor("output.weight"))  // the source stores the tied classifier as a copy: keep doing so
    add_matrix("output.weight", kind::embedding, model.token_embedding, vocab, dim);
  // Tensors of the source the model does not produce are dropped.
  std::vector<std::string> extra;
  if (src)
    for (const auto& ti : src->tensors())
      if (std::find(produced.begin(), produced.end(), ti.name) == produced.end()) extra.push_back(ti.name);
  for (const auto& name : extra) w.remove_tensor(name);

  // Metadata.
  auto u32 = [](std::int64_t v) { return gguf_value::u32(static_cast<std::uint32_t>(v)); };
  w.set("general.architecture", gguf_value::string("llama"));
  if (!options.name.empty() || !w.find("general.name"))
    w.set("general.name", gguf_value::string(!options.name.empty() ? options.name
                                                                    : std::filesystem::path(path).stem().string()));
  if (c.original_ctx <= 0 && c.max_position_embeddings <= 0) w.set("llama.context_length", u32(2048));
  w.set("llama.embedding_length", u32(c.dim));
  w.set("llama.feed_forward_length", u32(c.hidden_dim));
  w.set("llama.block_count", u32(c.n_layers));
  w.set("llama.attention.head_count", u32(c.n_heads));
  w.set("llama.attention.head_count_kv", u32(c.n_kv_heads));
  if (c.head_size() * c.n_heads != c.dim) {
    w.set("llama.attention.key_length", u32(c.head_size()));
    w.set("llama.attention.value_length", u32(c.head_size()));
  } else {
    w.remove("llama.attention.key_length");
    w.remove("llama.attention.value_length");
  }
  w.set("llama.rope.dimension_count", u32(c.rope_geometry().rotary()));
  w.set("llama.attention.layer_norm_rms_epsilon", gguf_value::f32(c.norm_eps));
  w.set("llama.vocab_size", u32(c.vocab_size));
  set_gguf_rope_scaling(w, c);
  if (options.storage == gguf_storage::llamacpp_recipe) {
    w.set("general.file_type", u32(static_cast<std::uint32_t>(options.recipe)));
  } else if (options.storage != gguf_storage::like_source) {
    const ggml_type main = options.storage == gguf_storage::f16    ? ggml_type::f16
                           : options.storage == gguf_storage::bf16 ? ggml_type::bf16
                           : options.storage == gguf_storage::quantized ? options.quant_type
                                                                        : ggml_type::f32;
    w.set("general.file_type", u32(ge::file_type_of(main)));
  }
  // Describe the tensors actually written (rows that cannot hold a block type, kept types); a llama.cpp recipe
  // keeps its file type whatever the fallbacks, as llama.cpp's quantizer does.
  if (options.storage != gguf_storage::llamacpp_recipe) set_gguf_file_type(w);
  if (any_quantized) w.set("general.quantization_version", u32(2));
  if (options.storage == gguf_storage::llamacpp_recipe && src) detail::gguf_export::llamacpp_file_layout(w, *src);

  if (options.vocabulary) {
    const spm_vocabulary& v = *options.vocabulary;
    if (v.pieces.size() != static_cast<std::size_t>(c.vocab_size) || v.scores.size() != v.pieces.size() ||
        (!v.types.empty() && v.types.size() != v.pieces.size()))
      throw invalid_argument(path + ": the vocabulary has " + std::to_string(v.pieces.size()) + " pieces, " +
                             std::to_string(v.scores.size()) + " scores and " + std::to_string(v.types.size()) +
                             " token types; the model's vocab_size is " + std::to_string(c.vocab_size));
    std::vector<std::string> old;
    for (const auto& entry : w.metadata())
      if (ge::starts_with(entry.first, "tokenizer.")) old.push_back(entry.first);
    for (const auto& k : old) w.remove(k);
    w.set("tokenizer.ggml.model", gguf_value::string("llama"));
    w.set("tokenizer.ggml.tokens", gguf_value::array_of(v.pieces));
    w.set("tokenizer.ggml.scores", gguf_value::array_of(v.scores));
    std::vector<std::int32_t> types = v.types;
    if (types.empty()) {
      types.assign(v.pieces.size(), static_cast<std::int32_t>(spm_token_type::normal));
      for (std::size_t i = 0; i < types.size(); ++i)
        if (detail::byte_piece_value(v.pieces[i]) >= 0) types[i] = static_cast<std::int32_t>(spm_token_type::byte);
    }
    w.set("tokenizer.ggml.token_type", gguf_value::array_of(types));
    if (v.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", u32(v.bos_id));
    if (v.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", u32(v.eos_id));
    if (v.unk_id >= 0) w.set("tokenizer.ggml.unknown_token_id", u32(v.unk_id));
    w.set("tokenizer.ggml.add_space_prefix", gguf_value::boolean(v.add_space_prefix));
    if (v.add_bos) w.set("tokenizer.ggml.add_bos_token", gguf_value::boolean(*v.add_bos));
    if (v.add_eos) w.set("tokenizer.ggml.add_eos_token", gguf_value::boolean(*v.add_eos));
  } else if (options.bpe_vocabulary) {
    const gguf_bpe_vocabulary& v = *options.bpe_vocabulary;
    if (v.tokens.size() != static_cast<std::size_t>(c.vocab_size) || v.types.size() != v.tokens.size())
      throw invalid_argument(path + ": the vocabulary has " + std::to_string(v.tokens.size()) + " tokens and " +
                             std::to_string(v.types.size()) + " token types; the model's vocab_size is " +
                             std::to_string(c.vocab_size));
    if (v.pre.empty()) throw invalid_argument(path + ": the BPE vocabulary names no pre-tokenizer (tokenizer.ggml.pre)");
    std::vector<std::string> old;
    for (const auto& entry : w.metadata())
      if (ge::starts_with(entry.first, "tokenizer.")) old.push_back(entry.first);
    for (const auto& k : old) w.remove(k);
    w.set("tokenizer.ggml.model", gguf_value::string("gpt2"));
    w.set("tokenizer.ggml.pre", gguf_value::string(v.pre));
    w.set("tokenizer.ggml.tokens", gguf_value::array_of(v.tokens));
    w.set("tokenizer.ggml.token_type", gguf_value::array_of(v.types));
    w.set("tokenizer.ggml.merges", gguf_value::array_of(v.merges));
    if (v.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", u32(v.bos_id));
    if (v.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", u32(v.eos_id));
    if (v.add_bos) w.set("tokenizer.ggml.add_bos_token", gguf_value::boolean(*v.add_bos));
    if (v.add_eos) w.set("tokenizer.ggml.add_eos_token", gguf_value::boolean(*v.add_eos));
  }

  std::vector<std::string> inputs;
  if (!model.source_path.empty()) inputs.push_back(model.source_path);
  if (src) inputs.push_back(src->path());
  w.write(path, inputs);
}

}  // namespace v0
}  // namespace qroar
