// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "../error.hpp"
#include "../rope/layout.hpp"
#include "../rope/scaling.hpp"

namespace qroar {
inline namespace v0 {

// RoPE settings of a Hugging Face config.json: geometry, trained context and scaling.
struct hf_rope_settings {
  rope_dims dims;
  rope_scaling scaling;
  int original_ctx = 0;             // L0 (original_max_position_embeddings, else max_position_embeddings)
  int max_position_embeddings = 0;  // Lmax
};

namespace detail {

inline double json_number(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto& v = obj.at(key);
  if (!v.is_number()) throw invalid_argument(where + ": '" + key + "' must be a number");
  return v.get<double>();
}

inline int json_positive_int(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto& v = obj.at(key);
  if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > (1LL << 31) - 1)
    throw invalid_argument(where + ": '" + key + "' must be a positive integer");
  return v.get<int>();
}

inline std::vector<double> json_number_list(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto& v = obj.at(key);
  if (!v.is_array()) throw invalid_argument(where + ": '" + key + "' must be a list of numbers");
  std::vector<double> out;
  for (const auto& e : v) {
    if (!e.is_number()) throw invalid_argument(where + ": '" + key + "' must be a list of numbers");
    out.push_back(e.get<double>());
  }
  return out;
}

}  // namespace detail

// Reads the RoPE scaling object (HF `rope_scaling`, or the newer `rope_parameters`) of a config.json.
// `config` is the whole config object; `where` names the file for error messages.
// Conventions (docs/rope.md): yarn/llama3/longrope take L0 from the scaling's original_max_position_embeddings,
// else from the top-level key of that name, else from max_position_embeddings; a missing yarn factor is Lmax/L0;
// longrope with a top-level original_max_position_embeddings uses factor = Lmax/L0 (Phi-3); dynamic uses Lmax.
// Errors: invalid_argument (values out of range, an unknown scaling type), format_error (a key of the wrong JSON
// type, a required key missing: the file is malformed).
inline hf_rope_settings parse_hf_rope(const nlohmann::json& config, const std::string& where = "config.json");

namespace detail {
inline hf_rope_settings parse_hf_rope_json(const nlohmann::json& config, const std::string& where) {
  if (!config.is_object()) throw invalid_argument(where + ": expected a JSON object");
  hf_rope_settings out;
  for (const char* key : {"rope_parameters", "rope_scaling"})  // HF: a dict or null; a string ("yarn") means nothing
    if (config.contains(key) && !config[key].is_object() && !config[key].is_null())
      throw format_error(where, "", 0, std::string("'") + key + "' must be a JSON object or null, got " +
                                           config[key].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  const nlohmann::json* params = nullptr;
  if (config.contains("rope_parameters") && config["rope_parameters"].is_object()) params = &config["rope_parameters"];
  else if (config.contains("rope_scaling") && config["rope_scaling"].is_object()) params = &config["rope_scaling"];

  double theta = 10000.0;
  if (config.contains("rope_theta")) theta = detail::json_number(config, "rope_theta", where);
  if (params && params->contains("rope_theta")) theta = detail::json_number(*params, "rope_theta", where);

  int head_dim = 0;
  if (config.contains("head_dim") && !config["head_dim"].is_null()) head_dim = detail::json_positive_int(config, "head_dim", where);
  else if (config.contains("hidden_size") && config.contains("num_attention_heads"))
    head_dim = detail::json_positive_int(config, "hidden_size", where) /
               detail::json_positive_int(config, "num_attention_heads", where);
  double partial = 1.0;
  if (config.contains("partial_rotary_factor")) partial = detail::json_number(config, "partial_rotary_factor", where);
  if (params && params->contains("partial_rotary_factor")) partial = detail::json_number(*params, "partial_rotary_factor", where);
  if (!(partial > 0.0 && partial <= 1.0)) throw invalid_argument(where + ": partial_rotary_factor must be in (0, 1]");
  out.dims.head_dim = head_dim;
  out.dims.rotary_dim = static_cast<int>(head_dim * partial);
  if (head_dim > 0 && out.dims.rotary_dim < 2)  // 0 would read as "the whole head" (full rotary)
    throw invalid_argument(where + ": partial_rotary_factor " + std::to_string(partial) + " of head_dim " +
                           std::to_string(head_dim) + " leaves " + std::to_string(out.dims.rotary_dim) +
                           " rotary channels (at least 2 are needed)");
  out.dims.base = theta;
  out.dims.layout = pair_layout::half_split;  // HF modeling code: rotate_half

  int lmax = 0;
  if (config.contains("max_position_embeddings"))
    lmax = detail::json_positive_int(config, "max_position_embeddings", where);
  int top_l0 = 0;
  if (config.contains("original_max_position_embeddings"))
    top_l0 = detail::json_positive_int(config, "original_max_position_embeddings", where);
  out.max_position_embeddings = lmax;
  out.original_ctx = top_l0 > 0 ? top_l0 : lmax;

  rope_scaling& sc = out.scaling;
  sc.max_position_embeddings = lmax;
  sc.original_ctx = out.original_ctx;
  if (!params) return out;
  const std::string w = where + ": rope scaling";
  std::string type = "default";
  if (params->contains("rope_type")) type = params->at("rope_type").get<std::string>();
  else if (params->contains("type")) type = params->at("type").get<std::string>();
  sc.type = rope_type_from_string(type);
  if (params->contains("original_max_position_embeddings")) {
    sc.original_ctx = detail::json_positive_int(*params, "original_max_position_embeddings", w);
    out.original_ctx = sc.original_ctx;
  }
  if (params->contains("factor") && !params->at("factor").is_null()) sc.factor = detail::json_number(*params, "factor", w);
  else if (sc.type == rope_type::yarn && lmax > 0 && sc.original_ctx > 0)
    sc.factor = static_cast<double>(lmax) / sc.original_ctx;
  auto opt = [&](const char* key, double& field) {
    if (params->contains(key) && !params->at(key).is_null()) {
      const double v = detail::json_number(*params, key, w);
      if (v != 0.0) field = v;  // HF reads beta_fast/beta_slow/mscale with `or`: 0 means unset
    }
  };
  opt("beta_fast", sc.beta_fast);
  opt("beta_slow", sc.beta_slow);
  opt("mscale", sc.mscale);
  opt("mscale_all_dim", sc.mscale_all_dim);
  opt("low_freq_factor", sc.low_freq_factor);
  opt("high_freq_factor", sc.high_freq_factor);
  if (params->contains("truncate") && params->at("truncate").is_boolean()) sc.truncate = params->at("truncate").get<bool>();
  if (params->contains("attention_factor") && !params->at("attention_factor").is_null())
    sc.attention_factor = detail::json_number(*params, "attention_factor", w);
  if (sc.type == rope_type::longrope) {
    sc.short_factor = detail::json_number_list(*params, "short_factor", w);
    sc.long_factor = detail::json_number_list(*params, "long_factor", w);
    if (top_l0 > 0 && lmax > 0) sc.factor = static_cast<double>(lmax) / top_l0;
  }
  if (sc.type != rope_type::none) sc.validate(out.dims);
  return out;
}
}  // namespace detail

inline hf_rope_settings parse_hf_rope(const nlohmann::json& config, const std::string& where) {
  try {
    return detail::parse_hf_rope_json(config, where);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(where, "", 0, std::string("bad RoPE settings: ") + e.what());
  }
}

}  // namespace v0
}  // namespace qroar
