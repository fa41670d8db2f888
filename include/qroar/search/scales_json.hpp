// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <new>
#include <sstream>
#include <string>

#include "../error.hpp"
#include "../io/atomic_write.hpp"
#include "../io/read_file.hpp"
#include "band_scales.hpp"

namespace qroar {
inline namespace v0 {

// The band-scales file (schema in docs/formats.md, "Band scales JSON"):
// {
//   "format": "qroar-band-scales", "version": 1,
//   "model": {"n_layers": L, "n_heads": H, "n_kv_heads": K, "head_dim": D, "rotary_dim": R},
//   "variant": "symmetric" | "query_only" | "independent",
//   "granularity": "global" | "per_layer" | "per_layer_kv_head",
//   "bands": [{"first_pair": a, "last_pair": b}, ...],
//   "units": [{"layer": l|null, "kv_head": k|null, "query": [g per band], "key": [g per band]}, ...],
//   "provenance": {...}   (free-form: rope scaling, quant spec, objective, figures; ignored when applied)
// }
// Factors refer to RoPE pairs, so the file applies to the same model in any format and pair layout.
inline nlohmann::ordered_json band_scales_to_json(const band_scales& s, const llama_config& c,
                                                  const nlohmann::ordered_json& provenance = {}) {
  nlohmann::ordered_json j;
  j["format"] = "qroar-band-scales";
  j["version"] = 1;
  j["model"] = {{"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads},
                {"head_dim", c.head_size()}, {"rotary_dim", c.rope_geometry().rotary()}};
  j["variant"] = to_string(s.variant);
  j["granularity"] = to_string(s.granularity);
  nlohmann::ordered_json bands = nlohmann::ordered_json::array();
  for (const auto& b : s.bands.bands) bands.push_back({{"first_pair", b.first_pair}, {"last_pair", b.last_pair}});
  j["bands"] = bands;
  nlohmann::ordered_json units = nlohmann::ordered_json::array();
  for (int u = 0; u < s.units(); ++u) {
    nlohmann::ordered_json unit;
    if (s.granularity == scale_granularity::global) {
      unit["layer"] = nullptr;
      unit["kv_head"] = nullptr;
    } else if (s.granularity == scale_granularity::per_layer) {
      unit["layer"] = u;
      unit["kv_head"] = nullptr;
    } else {
      unit["layer"] = u / s.n_kv_heads;
      unit["kv_head"] = u % s.n_kv_heads;
    }
    std::vector<double> q, k;
    for (std::size_t b = 0; b < s.bands.size(); ++b) {
      q.push_back(s.query[s.index(u, static_cast<int>(b))]);
      k.push_back(s.key[s.index(u, static_cast<int>(b))]);
    }
    unit["query"] = q;
    unit["key"] = k;
    units.push_back(unit);
  }
  j["units"] = units;
  if (!provenance.is_null()) j["provenance"] = provenance;
  return j;
}

// How far a stored key factor may be from what the variant label implies (query_only: 1; symmetric: 1/query,
// checked as |query * key - 1|): qroar writes both in full double precision (shortest round-trip form), so the
// slack only admits hand-written files with ten significant digits.
inline constexpr double scales_label_tolerance = 1e-9;

// Parses and validates a band-scales document against a model. `where` names the file in errors.
inline band_scales band_scales_from_json(const nlohmann::json& j, const llama_config& c, const std::string& where) {
  auto bad = [&](const std::string& what) -> invalid_argument { return invalid_argument(where + ": " + what); };
  // An integer field in [0, 2^31): get<int>() would convert a float (1e300) or a large integer with undefined
  // behaviour.
  auto int_at = [&](const nlohmann::json& obj, const char* key) -> int {
    const auto& v = obj.at(key);
    if (!v.is_number_integer() || (v.is_number_unsigned() ? v.get<std::uint64_t>() > INT32_MAX
                                                         : v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > INT32_MAX))
      throw bad(std::string("'") + key + "' must be a non-negative integer");
    return static_cast<int>(v.get<std::int64_t>());
  };
  try {
    if (!j.is_object() || j.value("format", std::string()) != "qroar-band-scales")
      throw bad("not a qroar band-scales file (\"format\": \"qroar-band-scales\" missing)");
    if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<std::int64_t>() != 1)
      throw bad("unsupported band-scales version (expected 1)");
    const auto& m = j.at("model");
    const auto geom = c.rope_geometry();
    if (int_at(m, "n_layers") != c.n_layers || int_at(m, "n_heads") != c.n_heads ||
        int_at(m, "n_kv_heads") != c.n_kv_heads || int_at(m, "head_dim") != c.head_size() ||
        int_at(m, "rotary_dim") != geom.rotary())
      throw bad("the scales were made for another model shape (layers, heads, KV heads, head_dim, rotary_dim)");
    const auto variant = scale_variant_from_string(j.at("variant").get<std::string>());
    const auto granularity = scale_granularity_from_string(j.at("granularity").get<std::string>());
    std::vector<int> edges;
    int expected_first = 0;
    for (const auto& b : j.at("bands")) {
      const int first = int_at(b, "first_pair"), last = int_at(b, "last_pair");
      if (first != expected_first || last < first || last >= geom.pairs())
        throw bad("bands must be contiguous, start at pair 0 and end at the last pair");
      edges.push_back(first);
      expected_first = last + 1;
    }
    if (expected_first != geom.pairs())
      throw bad("bands cover " + std::to_string(expected_first) + " pairs, the model has " + std::to_string(geom.pairs()));
    const auto inv = inverse_frequencies(rope_scaling::none(), geom);
    band_scales s(bands_from_edges(edges, inv, c.original_ctx), variant, granularity, c.n_layers, c.n_kv_heads);
    const auto& units = j.at("units");
    if (!units.is_array() || static_cast<int>(units.size()) != s.units())
      throw bad("expected " + std::to_string(s.units()) + " units for granularity " + to_string(granularity));
    for (int u = 0; u < s.units(); ++u) {
      const auto& unit = units[static_cast<std::size_t>(u)];
      const auto q = unit.at("query").get<std::vector<double>>();
      const auto k = unit.at("key").get<std::vector<double>>();
      if (q.size() != s.bands.size() || k.size() != s.bands.size()) throw bad("each unit needs one factor per band");
      for (std::size_t b = 0; b < q.size(); ++b) {
        if (!(q[b] > 0.0) || !(k[b] > 0.0) || !std::isfinite(q[b]) || !std::isfinite(k[b]) || q[b] > 1e4 ||
            k[b] > 1e4 || q[b] < 1e-4 || k[b] < 1e-4)
          throw bad("factors must be finite and in [1e-4, 1e4]");
        // the label must say what the factors do: query_only leaves W_K alone, symmetric scales it by 1/g
        if (variant == scale_variant::query_only && std::abs(k[b] - 1.0) > scales_label_tolerance)
          throw bad("variant query_only, but unit " + std::to_string(u) + " band " + std::to_string(b) +
                    " has key factor " + std::to_string(k[b]) + " (must be 1)");
        if (variant == scale_variant::symmetric && std::abs(q[b] * k[b] - 1.0) > scales_label_tolerance)
          throw bad("variant symmetric, but unit " + std::to_string(u) + " band " + std::to_string(b) + " has key factor " +
                    std::to_string(k[b]) + ", not the reciprocal of its query factor " + std::to_string(q[b]));
        s.query[s.index(u, static_cast<int>(b))] = q[b];
        s.key[s.index(u, static_cast<int>(b))] = k[b];
      }
    }
    s.validate(c);
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("malformed band-scales JSON: ") + e.what());
  }
}

inline band_scales read_band_scales(const std::string& path, const llama_config& c) {
  const std::string text = read_regular_file(path, max_json_bytes, "band-scales JSON");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    const auto* pe = dynamic_cast<const nlohmann::json::parse_error*>(&e);
    throw format_error(path, "", pe && pe->byte > 0 ? pe->byte - 1 : 0, std::string("not valid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw io_error(path + ": not enough memory to parse its " + std::to_string(text.size()) + " bytes of JSON");
  }
  return band_scales_from_json(j, c, path);
}

inline void write_band_scales(const std::string& path, const band_scales& s, const llama_config& c,
                              const nlohmann::ordered_json& provenance = {}) {
  const std::string text = band_scales_to_json(s, c, provenance).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  atomic_file_writer w(path);
  w.write(text.data(), text.size());
  w.commit([&](const std::string& tmp) {
    std::ifstream back(tmp);
    std::stringstream ss;
    ss << back.rdbuf();
    if (ss.str() != text) throw io_error(path + ": verification after writing failed");
  });
}

}  // namespace v0
}  // namespace qroar
