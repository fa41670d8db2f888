// SPDX-License-Identifier: MIT
// Hugging Face Llama folders: config.json + model.safetensors (or model.safetensors.index.json + shards).
//
//   model.embed_tokens.weight                        (vocab, dim)
//   model.layers.N.input_layernorm.weight            (dim)
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight   q: (n_heads*hd, dim)  k, v: (n_kv*hd, dim)  o: (dim, n_heads*hd)
//   model.layers.N.post_attention_layernorm.weight   (dim)
//   model.layers.N.mlp.{gate,up,down}_proj.weight    gate, up: (hidden, dim)  down: (dim, hidden)
//   model.norm.weight                                (dim)
//   lm_head.weight                                   (vocab, dim), absent or ignored when tie_word_embeddings
//
// HF modeling_llama applies RoPE with rotate_half, and convert_llama_weights_to_hf.py permutes the W_Q / W_K rows
// of Meta checkpoints to match: these folders hold the half-split layout (docs/formulas.md §1.3).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <new>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../detail/model_io.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "../model/qk_layout.hpp"
#include "atomic_folder.hpp"
#include "atomic_write.hpp"
#include "read_file.hpp"
#include "rope_json.hpp"
#include "safetensors.hpp"

namespace qroar {
inline namespace v0 {

namespace detail {
namespace hf_io {

inline std::string read_text_file(const std::string& path) { return read_regular_file(path, max_json_bytes, "JSON file"); }

inline nlohmann::json parse_json_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw io_error(path + ": is a directory, expected a JSON file");
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw format_error(path, "", e.byte > 0 ? e.byte - 1 : 0, std::string("not valid JSON: ") + e.what());
  } catch (const nlohmann::json::exception& e) {  // out_of_range 406: a number overflowing double (1e999)
    throw format_error(path, "", 0, std::string("not valid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw io_error(path + ": not enough memory to parse its " + std::to_string(text.size()) + " bytes of JSON");
  }
}

// A positive integer field; `fallback` (> 0) when absent or null, format_error when absent without a fallback.
inline int int_field(const nlohmann::json& cfg, const char* key, const std::string& file, int fallback = 0) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (fallback > 0) return fallback;
    throw format_error(file, "", 0, std::string("config.json: '") + key + "' is missing");
  }
  if (!it->is_number_integer() || it->get<long long>() <= 0 || it->get<long long>() > 0x7fffffffLL)
    throw format_error(file, "", 0, std::string("config.json: '") + key + "' must be a positive integer, got " + it->dump());
  return it->get<int>();
}

inline double number_field(const nlohmann::json& cfg, const char* key, const std::string& file, double fallback) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw format_error(file, "", 0, std::string("config.json: '") + key + "' must be a number");
  return it->get<double>();
}

inline bool bool_field(const nlohmann::json& cfg, const char* key, const std::string& file, bool fallback) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw format_error(file, "", 0, std::string("config.json: '") + key + "' must be true or false");
  return it->get<bool>();
}

// The shortest decimal that reads back as the same float (so 1e-5f is written 1e-05, not 9.99999974737875e-06).
inline double shortest_double(float f) {
  char buf[64];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

inline bool known_architecture(const std::string& a) {
  return a == "LlamaForCausalLM" || a == "MistralForCausalLM";
}

}  // namespace hf_io
}  // namespace detail

// The llama_config of an HF config.json object (`file` names it in errors). Layout half_split; original_ctx is the
// scaling's original_max_position_embeddings, else the top-level one, else max_position_embeddings (default 2048);
// config.rope is the file's rope_scaling / rope_parameters (parse_hf_rope). HF LlamaConfig defaults apply to
// absent keys: num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads,
// rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false.
// Errors: format_error (missing or mistyped keys), unsupported (not a Llama-family model: other model_type or
// architectures, biases, an activation other than silu, Mistral sliding-window attention); RoPE parameters
// parse_hf_rope rejects and an inconsistent geometry are format_error too (a defect of the file).
inline llama_config parse_hf_llama_config(const nlohmann::json& cfg, const std::string& file) {
  namespace hf = detail::hf_io;
  if (!cfg.is_object()) throw format_error(file, "", 0, "config.json is not a JSON object");
  std::string model_type;
  if (cfg.contains("model_type")) {
    if (!cfg["model_type"].is_string()) throw format_error(file, "", 0, "config.json: 'model_type' must be a string");
    model_type = cfg["model_type"].get<std::string>();
  }
  bool llama_arch = false;
  if (cfg.contains("architectures") && !cfg["architectures"].is_null()) {
    if (!cfg["architectures"].is_array()) throw format_error(file, "", 0, "config.json: 'architectures' must be a list");
    for (const auto& a : cfg["architectures"]) {
      if (!a.is_string()) throw format_error(file, "", 0, "config.json: 'architectures' must be a list of strings");
      if (!hf::known_architecture(a.get<std::string>()))
        throw unsupported(file + ": architecture '" + a.get<std::string>() + "' is not a Llama-family causal LM");
      llama_arch = true;
    }
  }
  if (!model_type.empty() && model_type != "llama" && model_type != "mistral")
    throw unsupported(file + ": model_type '" + model_type + "' is not supported (llama, mistral are)");
  if (model_type.empty() && !llama_arch)
    throw unsupported(file + ": neither model_type nor architectures says this is a Llama-family model");
  if (model_type == "mistral" && cfg.contains("sliding_window") && !cfg["sliding_window"].is_null())
    throw unsupported(file + ": Mistral sliding-window attention is not supported");
  if (hf::bool_field(cfg, "attention_bias", file, false) || hf::bool_field(cfg, "mlp_bias", file, false))
    throw unsupported(file + ": attention or MLP biases are not supported");
  if (cfg.contains("hidden_act") && !(cfg["hidden_act"].is_string() && cfg["hidden_act"].get<std::string>() == "silu"))
    throw unsupported(file + ": hidden_act " + cfg["hidden_act"].dump() + " is not supported (silu is)");

  llama_config c;
  c.architecture = "llama";
  c.dim = hf::int_field(cfg, "hidden_size", file);
  c.hidden_dim = hf::int_field(cfg, "intermediate_size", file);
  c.n_layers = hf::int_field(cfg, "num_hidden_layers", file);
  c.n_heads = hf::int_field(cfg, "num_attention_heads", file);
  c.n_kv_heads = hf::int_field(cfg, "num_key_value_heads", file, c.n_heads);
  c.vocab_size = hf::int_field(cfg, "vocab_size", file);
  c.head_dim = hf::int_field(cfg, "head_dim", file, c.dim / c.n_heads > 0 ? c.dim / c.n_heads : 1);
  c.norm_eps = static_cast<float>(hf::number_field(cfg, "rms_norm_eps", file, 1e-6));
  c.tied_embeddings = hf::bool_field(cfg, "tie_word_embeddings", file, false);
  c.layout = pair_layout::half_split;

  nlohmann::json with_defaults = cfg;
  if (!cfg.contains("max_position_embeddings") || cfg["max_position_embeddings"].is_null())
    with_defaults["max_position_embeddings"] = 2048;  // LlamaConfig default
  with_defaults["head_dim"] = c.head_dim;
  hf_rope_settings rope;
  try {
    rope = parse_hf_rope(with_defaults, file);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(file, "", 0, std::string("config.json: bad RoPE settings: ") + e.what());
  } catch (const invalid_argument& e) {  // values parse_hf_rope rejects: a defect of this file
    throw format_error(file, "", 0, std::string("config.json: bad RoPE settings: ") + e.what());
  }
  c.rope_theta = rope.dims.base;
  c.rotary_dim = rope.dims.rotary_dim == c.head_dim ? 0 : rope.dims.rotary_dim;
  c.original_ctx = rope.original_ctx;
  c.max_position_embeddings = rope.max_position_embeddings;
  c.rope = rope.scaling;
  c.validate_loaded(file);
  return c;
}

// Loads a Hugging Face Llama folder (config.json + model.safetensors, or model.safetensors.index.json + shards;
// model.safetensors wins when both exist, as in transformers). Weights may be F32, F16 or BF16.
// Errors: io_error (missing files), format_error (bad JSON, missing tensors, wrong shapes, a shard path leaving the
// folder, any safetensors_file error), unsupported (see parse_hf_llama_config; bias tensors; other dtypes),
// numeric_error (NaN or infinite weights, naming the tensor and element).
inline llama_model load_hf_model(const std::string& dir) {
  namespace fs = std::filesystem;
  namespace hf = detail::hf_io;
  if (!fs::is_directory(dir)) throw io_error(dir + ": not a directory (expected a Hugging Face model folder)");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  llama_model m;
  m.config = parse_hf_llama_config(hf::parse_json_file(config_path), config_path);
  const llama_config& c = m.config;

  // Which file holds which tensor.
  std::map<std::string, std::unique_ptr<safetensors_file>> shards;
  std::map<std::string, std::string> owner;  // tensor -> shard file name
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    auto f = std::make_unique<safetensors_file>(single.string());
    for (const auto& t : f->tensors()) owner[t.name] = "model.safetensors";
    shards["model.safetensors"] = std::move(f);
  } else if (fs::exists(index)) {
    const nlohmann::json idx = hf::parse_json_file(index.string());
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw format_error(index.string(), "", 0, "expected an object with a 'weight_map' object");
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw format_error(index.string(), it.key(), 0, "weight_map values must be file names");
      const std::string shard = it.value().get<std::string>();
      const fs::path sp(shard);
      if (shard.empty() || sp.is_absolute() || sp.has_parent_path() || shard == "." || shard == "..")
        throw format_error(index.string(), it.key(), 0, "shard '" + shard + "' is not a file name inside the folder");
      if (!shards.count(shard)) shards[shard] = std::make_unique<safetensors_file>((fs::path(dir) / sp).string());
      owner[it.key()] = shard;
    }
  } else {
    throw io_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& s : shards)
    for (const auto& t : s.second->tensors())
      if (t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0)
        throw unsupported(s.second->path() + ": tensor '" + t.name + "': biases are not supported by the Llama model");

  auto locate = [&](const std::string& name) -> const safetensors_file& {
    const auto it = owner.find(name);
    if (it == owner.end()) {
      const std::string where = shards.size() == 1 && fs::exists(single) ? single.string() : index.string();
      throw format_error(where, name, 0, "required tensor is missing");
    }
    return *shards.at(it->second);
  };
  auto check_shape = [&](const safetensors_file& f, const std::string& name, std::vector<std::uint64_t> expected) {
    const auto& t = f.info(name);
    if (t.shape != expected)
      throw format_error(f.path(), name, f.data_offset() + t.begin,
                         "shape " + detail::safetensors_io::shape_string(t.shape) + ", expected " +
                             detail::safetensors_io::shape_string(expected));
  };
  auto matrix = [&](const std::string& name, int rows, int cols) {
    const safetensors_file& f = locate(name);
    check_shape(f, name, {static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols)});
    tensor t = f.read_matrix(name);
    detail::model_io::check_finite(t.data(), static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), f.path(), name);
    return t;
  };
  auto vec = [&](const std::string& name, int n) {
    const safetensors_file& f = locate(name);
    check_shape(f, name, {static_cast<std::uint64_t>(n)});
    vector v = f.read_vector(name);
    detail::model_io::check_finite(v.data(), 1, static_cast<std::uint64_t>(n), f.path(), name);
    return v;
  };

  const int q_dim = c.q_dim(), kv_dim = c.kv_dim();
  m.token_embedding = matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
  m.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    llama_layer& L = m.layers[static_cast<std::size_t>(l)];
    L.attn_norm = vec(p + "input_layernorm.weight", c.dim);
    L.wq = matrix(p + "self_attn.q_proj.weight", q_dim, c.dim);
    L.wk = matrix(p + "self_attn.k_proj.weight", kv_dim, c.dim);
    L.wv = matrix(p + "self_attn.v_proj.weight", kv_dim, c.dim);
    L.wo = matrix(p + "self_attn.o_proj.weight", c.dim, q_dim);
    L.ffn_norm = vec(p + "post_attention_layernorm.weight", c.dim);
    L.w1 = matrix(p + "mlp.gate_proj.weight", c.hidden_dim, c.dim);
    L.w2 = matrix(p + "mlp.down_proj.weight", c.dim, c.hidden_dim);
    L.w3 = matrix(p + "mlp.up_proj.weight", c.hidden_dim, c.dim);
  }
  m.final_norm = vec("model.norm.weight", c.dim);
  if (!c.tied_embeddings) m.output = matrix("lm_head.weight", c.vocab_size, c.dim);
  m.source_path = dir;
  m.source_format = "hf";
  return m;
}

// The HF rope_scaling object of `sc` (both "rope_type" and the older "type" key). Throws unsupported for
// qroar-only settings HF cannot express (yarn-ggml, a YaRN correction_ctx).
// `original_ctx` (the model's L0) is written when the scaling itself does not name one.
inline nlohmann::ordered_json hf_rope_scaling_json(const rope_scaling& sc, int original_ctx = 0) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (sc.type == rope_type::yarn_ggml) throw unsupported("config.json cannot express the ggml YaRN semantics (yarn-ggml)");
  if (sc.correction_ctx != 0) throw unsupported("config.json cannot express a YaRN correction_ctx");
  j["rope_type"] = to_string(sc.type);
  j["type"] = to_string(sc.type);
  j["factor"] = sc.factor;
  // Read back by parse_hf_rope for every type (HF itself only reads it for yarn, llama3 and longrope).
  const int l0 = sc.original_ctx > 0 ? sc.original_ctx : original_ctx;
  if (l0 > 0) j["original_max_position_embeddings"] = l0;
  switch (sc.type) {
    case rope_type::yarn:
      j["beta_fast"] = sc.beta_fast;
      j["beta_slow"] = sc.beta_slow;
      if (sc.mscale != 0.0) j["mscale"] = sc.mscale;
      if (sc.mscale_all_dim != 0.0) j["mscale_all_dim"] = sc.mscale_all_dim;
      if (!sc.truncate) j["truncate"] = false;
      if (sc.attention_factor) j["attention_factor"] = *sc.attention_factor;
      break;
    case rope_type::llama3:
      j["low_freq_factor"] = sc.low_freq_factor;
      j["high_freq_factor"] = sc.high_freq_factor;
      break;
    case rope_type::longrope:
      j["short_factor"] = sc.short_factor;
      j["long_factor"] = sc.long_factor;
      if (sc.attention_factor) j["attention_factor"] = *sc.attention_factor;
      break;
    default:
      break;
  }
  return j;
}

// The max_position_embeddings config.json states for `c` (Lmax); `stated` is the model's own (its
// max_position_embeddings, else L0):
//   yarn              F x L0, the extended context. Transformers 4.45 - 4.5x derive the YaRN factor as
//                     max_position_embeddings / rope_scaling.original_max_position_embeddings whenever the latter
//                     is present (later versions read `factor`, and derive it only when absent; both warn when the
//                     two disagree), so Lmax = F x L0 is the one value that gives every version the same scaling. A
//                     non-integer F x L0 cannot, and is refused (unsupported).
//   dynamic           the scaling's Lmax when it states one (--max-position-embeddings), which HF's
//                     _compute_dynamic_ntk_parameters reads as the length the base starts to grow at; else `stated`.
//   other scalings    `stated` when it exceeds L0 (Llama 3.1: 16 x L0 with factor 8), else F x L0 rounded.
//   no scaling        `stated`.
inline int hf_max_position_embeddings(const llama_config& c) {
  const rope_scaling& sc = c.rope;
  const int stated = c.max_position_embeddings > 0 ? c.max_position_embeddings : c.original_ctx;
  if (sc.type == rope_type::none) return stated;
  const int l0 = sc.original_ctx > 0 ? sc.original_ctx : c.original_ctx;
  if (sc.type == rope_type::dynamic) return sc.max_position_embeddings > 0 ? sc.max_position_embeddings : stated;
  const double extended = sc.factor * l0;
  const double rounded = std::round(extended);
  if (sc.type == rope_type::yarn) {
    if (rounded != extended || !(rounded >= 1.0) || rounded > 2147483647.0)
      throw unsupported("config.json cannot express YaRN factor " + std::to_string(sc.factor) + " at trained context " +
                        std::to_string(l0) + ": Transformers derives the factor from max_position_embeddings / "
                        "original_max_position_embeddings, and factor x L0 = " + std::to_string(extended) +
                        " is not an integer");
    return static_cast<int>(rounded);
  }
  if (stated > l0) return stated;
  return std::max(l0, static_cast<int>(std::min(rounded, 2147483647.0)));
}

// The config.json written by write_hf_model for `model` stored in `dtype`.
inline nlohmann::ordered_json hf_config_json(const llama_model& model, safetensors_dtype dtype) {
  const llama_config& c = model.config;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  const int lmax = hf_max_position_embeddings(c);
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_size();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = lmax;
  if (c.rope.type == rope_type::none && c.original_ctx > 0 && c.original_ctx != lmax)
    j["original_max_position_embeddings"] = c.original_ctx;
  j["rope_theta"] = c.rope_theta;
  if (c.rotary_dim != 0 && c.rotary_dim != c.head_size())
    j["partial_rotary_factor"] = static_cast<double>(c.rotary_dim) / c.head_size();
  j["rms_norm_eps"] = detail::hf_io::shortest_double(c.norm_eps);
  j["tie_word_embeddings"] = model.output.size() == 0;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["torch_dtype"] = dtype == safetensors_dtype::f32 ? "float32" : dtype == safetensors_dtype::f16 ? "float16" : "bfloat16";
  j["rope_scaling"] = c.rope.type == rope_type::none ? nlohmann::ordered_json() : hf_rope_scaling_json(c.rope, c.original_ctx);
  return j;
}

// Copies the regular file `from` to `to` through atomic_file_writer (errors, fsync and close checked).
inline void copy_file_atomically(const std::string& from, const std::string& to, const std::vector<std::string>& inputs = {}) {
  const int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(from + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw io_error(from + ": not a regular file");
  }
  try {
    atomic_file_writer out(to, inputs);
    std::vector<char> buf(1 << 16);
    for (;;) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw io_error(from + ": read failed: " + std::strerror(errno));
      if (n == 0) break;
      out.write(buf.data(), static_cast<std::size_t>(n));
    }
    out.commit();
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

// Writes `model` as a Hugging Face Llama folder: model.safetensors (tensors in `dtype`, metadata format=pt),
// config.json and `extra_files` ({name in the folder, source file} pairs, e.g. {"tokenizer.model", path}), as one
// atomic folder write (atomic_folder_writer: built beside `dir`, swapped in, the old folder removed after the swap;
// the old folder's other files are carried over, except weights: *.safetensors, *.safetensors.index.json, *.bin,
// *.pt, *.pth). W_Q / W_K rows are permuted to the half-split layout when the model is interleaved. Refuses
// (invalid_argument) to write into the folder the model was loaded from, over model.source_path or over any of
// `inputs`. Throws invalid_argument for inconsistent shapes, numeric_error for values not finite in `dtype`,
// unsupported for RoPE settings config.json cannot hold.
inline void write_hf_model(const llama_model& model, const std::string& dir, safetensors_dtype dtype = safetensors_dtype::f32,
                           const std::vector<std::pair<std::string, std::string>>& extra_files = {},
                           std::vector<std::string> inputs = {}) {
  namespace fs = std::filesystem;
  const llama_config& c = model.config;
  c.validate(dir);
  if (model.layers.size() != static_cast<std::size_t>(c.n_layers))
    throw invalid_argument(dir + ": the model has " + std::to_string(model.layers.size()) + " layers, its config says " +
                           std::to_string(c.n_layers));
  std::error_code ec;
  if (!model.source_path.empty() && fs::exists(dir, ec) && fs::equivalent(dir, model.source_path, ec))
    throw invalid_argument("refusing to overwrite the input model folder " + model.source_path + " (choose another folder)");
  const nlohmann::ordered_json config = hf_config_json(model, dtype);  // throws before anything is written

  const Eigen::Index dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size, q = c.q_dim(), kv = c.kv_dim();
  std::vector<tensor> permuted;
  permuted.reserve(2 * model.layers.size());
  std::vector<safetensors_entry> entries;
  auto add_matrix = [&](const std::string& name, const tensor& t, Eigen::Index rows, Eigen::Index cols) {
    if (t.rows() != rows || t.cols() != cols)
      throw invalid_argument("model tensor '" + name + "' has shape (" + std::to_string(t.rows()) + ", " +
                             std::to_string(t.cols()) + "), expected (" + std::to_string(rows) + ", " + std::to_string(cols) + ")");
    entries.push_back(safetensors_entry::matrix(name, t));
  };
  auto add_vector = [&](const std::string& name, const vector& v) {
    if (v.size() != dim)
      throw invalid_argument("model tensor '" + name + "' has " + std::to_string(v.size()) + " elements, expected " +
                             std::to_string(dim));
    entries.push_back(safetensors_entry::vec(name, v));
  };
  const bool permute = c.layout != pair_layout::half_split;
  add_matrix("model.embed_tokens.weight", model.token_embedding, vocab, dim);
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    const llama_layer& L = model.layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_vector(p + "input_layernorm.weight", L.attn_norm);
    if (permute) {
      permuted.push_back(permute_qk_rows(L.wq, c.n_heads, c.head_size(), c.rotary_dim, c.layout, pair_layout::half_split));
      add_matrix(p + "self_attn.q_proj.weight", permuted.back(), q, dim);
      permuted.push_back(permute_qk_rows(L.wk, c.n_kv_heads, c.head_size(), c.rotary_dim, c.layout, pair_layout::half_split));
      add_matrix(p + "self_attn.k_proj.weight", permuted.back(), kv, dim);
    } else {
      add_matrix(p + "self_attn.q_proj.weight", L.wq, q, dim);
      add_matrix(p + "self_attn.k_proj.weight", L.wk, kv, dim);
    }
    add_matrix(p + "self_attn.v_proj.weight", L.wv, kv, dim);
    add_matrix(p + "self_attn.o_proj.weight", L.wo, dim, q);
    add_vector(p + "post_attention_layernorm.weight", L.ffn_norm);
    add_matrix(p + "mlp.gate_proj.weight", L.w1, hidden, dim);
    add_matrix(p + "mlp.down_proj.weight", L.w2, dim, hidden);
    add_matrix(p + "mlp.up_proj.weight", L.w3, hidden, dim);
  }
  add_vector("model.norm.weight", model.final_norm);
  if (model.output.size() > 0) add_matrix("lm_head.weight", model.output, vocab, dim);

  if (!model.source_path.empty()) inputs.push_back(model.source_path);
  for (const auto& [name, from] : extra_files) inputs.push_back(from);
  auto ends_with = [](const std::string& s, const char* suffix) {
    const std::size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
  };
  atomic_folder_writer folder(dir, inputs, [&](const std::string& name) {
    return !(ends_with(name, ".safetensors") || ends_with(name, ".safetensors.index.json") || ends_with(name, ".bin") ||
             ends_with(name, ".pt") || ends_with(name, ".pth"));
  });
  write_safetensors(folder.file("model.safetensors"), std::move(entries), dtype, {{"format", "pt"}}, inputs);
  const std::string text = config.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  atomic_file_writer out(folder.file("config.json"), inputs);
  out.write(text.data(), text.size());
  out.commit([&](const std::string& temp) {
    parse_hf_llama_config(detail::hf_io::parse_json_file(temp), temp);
  });
  for (const auto& [name, from] : extra_files) copy_file_atomically(from, folder.file(name), inputs);
  folder.commit();
}

}  // namespace v0
}  // namespace qroar
