// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "../error.hpp"
#include "ggml_types.hpp"
#include "llamacpp_recipe.hpp"

namespace qroar {
inline namespace v0 {

// One textual quantization spec for the library and the CLI (docs/quantization.md):
//   weights  rtn:w<bits>:(g<N>|channel|tensor)[:sym|:asym][:clip][:fp16]   e.g. rtn:w4:g32:sym
//            gptq:w<bits>[:g<N>][:sym|:asym][:act-order][:damp<x>]         e.g. gptq:w4:g128
//            ggml:<type>                                                    e.g. ggml:q4_0, ggml:q4_K
//            ggml:<llama.cpp mix>     q4_K_S q4_K_M q5_K_S q5_K_M: llama.cpp's per-tensor recipe
//   kv cache kv:k<b>v<b>|k<b>|v<b>:(token|channel):g<N>[:pre-rope|:post-rope][:asym]
//                                                                           e.g. kv:k4v4:token:g32:post-rope
//   q/k activations  act:q<b>k<b>|q<b>|k<b>:token:g<N>[:pre-rope|:post-rope][:asym]  e.g. act:q8k8:token:g32
//            (post-rope by default: the q and k that enter q.k, like llama.cpp's conversion of Q to the
//            K cache's vec_dot type)
// Parts are joined with '+': rtn:w4:g32:sym+kv:k4:token:g8:post-rope.

enum class weight_method { none, rtn, gptq, ggml };
enum class weight_granularity { group, channel, per_tensor };

struct weight_quant_spec {
  weight_method method = weight_method::none;
  int bits = 0;
  weight_granularity granularity = weight_granularity::group;
  int group_size = 0;      // for granularity group
  bool symmetric = true;
  bool clip_search = false;  // RTN: search a clip ratio minimising the group's MSE
  bool fp16_scales = false;  // round stored scales (and zero points' scale) to fp16 as real formats do
  bool act_order = false;    // GPTQ: process columns by decreasing Hessian diagonal
  double damp = 0.01;        // GPTQ: dampening as a fraction of the mean Hessian diagonal
  ggml_type ggml = ggml_type::f32;
  // ggml: llama.cpp's whole-model recipe for this file type (ggml:q4_K_M, or a single-type spec with --recipe
  // llama.cpp): per-tensor types as llama.cpp's quantizer chooses them, embeddings and output included
  // (quant/llamacpp_recipe.hpp). Unset: every linear weight in `ggml` (qroar's rule), embeddings in f32.
  std::optional<llama_file_type> llamacpp_recipe;
};

enum class kv_granularity { token, channel };

// Quantization of cached keys/values (or of q/k activations): `bits` 0 means "kept in full precision".
struct kv_quant_spec {
  int key_bits = 0;
  int value_bits = 0;
  kv_granularity granularity = kv_granularity::token;
  int group_size = 0;       // token: channels per group along head_dim; channel: tokens per group
  bool post_rope = true;    // keys quantized after RoPE (KIVI, llama.cpp) or before (KVQuant)
  bool symmetric = true;
  bool enabled() const noexcept { return key_bits > 0 || value_bits > 0; }
};

struct quant_spec {
  weight_quant_spec weights;
  kv_quant_spec kv;
  kv_quant_spec activations;  // key_bits: q activations, value_bits: k activations (per token only)
  std::string text;           // the spec as given

  bool quantizes_weights() const noexcept { return weights.method != weight_method::none; }
};

namespace detail {

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (;;) {
    const auto next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) return out;
    pos = next + 1;
  }
}

inline int parse_spec_int(const std::string& s, const std::string& part, const std::string& spec) {
  std::size_t used = 0;
  long v = -1;
  try {
    v = std::stol(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || v <= 0 || v > (1 << 24))
    throw invalid_argument("quant spec '" + spec + "': bad number in '" + part + "'");
  return static_cast<int>(v);
}

inline void check_bits(int bits, const std::string& part, const std::string& spec) {
  if (bits < 2 || bits > 8)
    throw invalid_argument("quant spec '" + spec + "': '" + part + "': bits must be 2..8");
}

inline kv_quant_spec parse_kv_part(const std::vector<std::string>& f, const std::string& spec, bool activations) {
  kv_quant_spec kv;
  const std::string& what = f.size() > 1 ? f[1] : std::string();
  const char first = activations ? 'q' : 'k';
  const char second = activations ? 'k' : 'v';
  // k4v4 / k4 / v4 (or q8k8 / q8 / k8 for activations)
  std::size_t i = 0;
  bool any = false;
  while (i < what.size()) {
    const char c = what[i++];
    std::size_t j = i;
    while (j < what.size() && what[j] >= '0' && what[j] <= '9') ++j;
    if ((c != first && c != second) || j == i)
      throw invalid_argument("quant spec '" + spec + "': bad part '" + what + "' (expected e.g. " +
                             std::string(1, first) + "4" + std::string(1, second) + "4)");
    const int bits = parse_spec_int(what.substr(i, j - i), what, spec);
    check_bits(bits, what, spec);
    (c == first ? kv.key_bits : kv.value_bits) = bits;
    any = true;
    i = j;
  }
  if (!any) throw invalid_argument("quant spec '" + spec + "': missing bit widths after '" + f[0] + "'");
  bool have_gran = false;
  for (std::size_t p = 2; p < f.size(); ++p) {
    const std::string& part = f[p];
    if (part == "token") {
      kv.granularity = kv_granularity::token;
      have_gran = true;
    } else if (part == "channel" && !activations) {
      kv.granularity = kv_granularity::channel;
      have_gran = true;
    } else if (part.size() > 1 && part[0] == 'g') {
      kv.group_size = parse_spec_int(part.substr(1), part, spec);
    } else if (part == "post-rope") {
      kv.post_rope = true;
    } else if (part == "pre-rope") {
      kv.post_rope = false;
    } else if (part == "asym") {
      kv.symmetric = false;
    } else if (part == "sym") {
      kv.symmetric = true;
    } else {
      throw invalid_argument("quant spec '" + spec + "': unknown part '" + part + "'");
    }
  }
  if (!have_gran) throw invalid_argument("quant spec '" + spec + "': say 'token' or 'channel' for '" + f[0] + "'");
  if (kv.group_size == 0) throw invalid_argument("quant spec '" + spec + "': missing group size g<N> for '" + f[0] + "'");
  return kv;
}

}  // namespace detail

// Parses a spec; throws invalid_argument naming the bad part.
inline quant_spec parse_quant_spec(const std::string& spec) {
  quant_spec q;
  q.text = spec;
  if (spec.empty() || spec == "none" || spec == "fp32") return q;
  for (const auto& component : detail::split(spec, '+')) {
    const auto f = detail::split(component, ':');
    const std::string& kind = f[0];
    if (kind == "rtn" || kind == "gptq") {
      if (q.weights.method != weight_method::none)
        throw invalid_argument("quant spec '" + spec + "': more than one weight quantizer");
      auto& w = q.weights;
      w.method = kind == "rtn" ? weight_method::rtn : weight_method::gptq;
      if (f.size() < 2 || f[1].size() < 2 || f[1][0] != 'w')
        throw invalid_argument("quant spec '" + spec + "': '" + component + "' needs a bit width like w4");
      w.bits = detail::parse_spec_int(f[1].substr(1), f[1], spec);
      detail::check_bits(w.bits, f[1], spec);
      bool have_gran = false;
      for (std::size_t p = 2; p < f.size(); ++p) {
        const std::string& part = f[p];
        if (part.size() > 1 && part[0] == 'g' && part[1] >= '0' && part[1] <= '9') {
          w.granularity = weight_granularity::group;
          w.group_size = detail::parse_spec_int(part.substr(1), part, spec);
          have_gran = true;
        } else if (part == "channel") {
          w.granularity = weight_granularity::channel;
          have_gran = true;
        } else if (part == "tensor" && kind == "rtn") {
          w.granularity = weight_granularity::per_tensor;
          have_gran = true;
        } else if (part == "sym") {
          w.symmetric = true;
        } else if (part == "asym") {
          w.symmetric = false;
        } else if (part == "clip" && kind == "rtn") {
          w.clip_search = true;
        } else if (part == "fp16") {
          w.fp16_scales = true;
        } else if ((part == "act-order" || part == "actorder") && kind == "gptq") {
          w.act_order = true;
        } else if (part.rfind("damp", 0) == 0 && kind == "gptq") {
          try {
            std::size_t used = 0;
            w.damp = std::stod(part.substr(4), &used);
            if (used != part.size() - 4 || !(w.damp > 0.0 && w.damp < 1.0)) throw std::exception();
          } catch (const std::exception&) {
            throw invalid_argument("quant spec '" + spec + "': bad dampening '" + part + "' (e.g. damp0.01)");
          }
        } else {
          throw invalid_argument("quant spec '" + spec + "': unknown part '" + part + "' in '" + component + "'");
        }
      }
      if (!have_gran) {
        if (kind == "gptq") w.granularity = weight_granularity::channel;
        else throw invalid_argument("quant spec '" + spec + "': '" + component + "' needs g<N>, channel or tensor");
      }
    } else if (kind == "ggml") {
      if (q.weights.method != weight_method::none)
        throw invalid_argument("quant spec '" + spec + "': more than one weight quantizer");
      if (f.size() != 2) throw invalid_argument("quant spec '" + spec + "': expected ggml:<type>, e.g. ggml:q4_0");
      ggml_type t;
      try {
        t = ggml_type_from_string(f[1]);
      } catch (const invalid_argument&) {
        // llama.cpp's mixed file types (q4_K_M, q4_K_S, q5_K_M, q5_K_S) are recipes over their base type.
        bool mix = false;
        for (const auto& e : detail::llama_file_type_names)
          if (f[1] == e.name && ggml_traits(e.default_type).block_size > 1) {
            t = e.default_type;
            q.weights.llamacpp_recipe = e.type;
            mix = true;
          }
        if (!mix) throw invalid_argument("quant spec '" + spec + "': unknown ggml type '" + f[1] + "'");
      }
      const auto& tr = ggml_traits(t);
      if (!tr.supported || t == ggml_type::f32)
        throw invalid_argument("quant spec '" + spec + "': ggml type '" + f[1] + "' is not supported for weights");
      q.weights.method = weight_method::ggml;
      q.weights.ggml = t;
    } else if (kind == "kv") {
      if (q.kv.enabled()) throw invalid_argument("quant spec '" + spec + "': more than one kv part");
      q.kv = detail::parse_kv_part(f, spec, false);
    } else if (kind == "act") {
      if (q.activations.enabled()) throw invalid_argument("quant spec '" + spec + "': more than one act part");
      q.activations = detail::parse_kv_part(f, spec, true);
    } else {
      throw invalid_argument("quant spec '" + spec + "': unknown quantizer '" + kind +
                             "' (expected rtn, gptq, ggml, kv or act)");
    }
  }
  return q;
}

}  // namespace v0
}  // namespace qroar
