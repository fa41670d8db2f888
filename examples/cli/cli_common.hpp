// Shared pieces of the qroar command line: option groups, usage errors, JSON output.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <qroar/qroar.hpp>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace qroar_cli {

// Exit codes: 0 success, 1 failure (bad file, numerical failure), 2 usage error.
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

// A usage error found after CLI11 parsing (inconsistent options): reported like CLI11's own errors.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// CLI11's PositiveNumber / NonNegativeNumber let NaN through (NaN <= 0 is false): these also require finite values.
inline CLI::Validator finite_number(bool positive) {
  return CLI::Validator(
      [positive](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(v))
          return "'" + s + "' is not a finite number";
        if (positive ? !(v > 0.0) : !(v >= 0.0)) return "'" + s + (positive ? "' is not positive" : "' is negative");
        return {};
      },
      positive ? "POSITIVE" : "NONNEGATIVE", positive ? "finite positive number" : "finite non-negative number");
}
inline const CLI::Validator finite_positive = finite_number(true);
inline const CLI::Validator finite_non_negative = finite_number(false);

// RoPE scaling flags shared by `rope`, `eval`, `search`, ... (same names as `qroar rope`).
struct rope_options {
  std::string type = "default";
  double factor = 1.0;
  int seq_len = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool no_truncate = false;
  double attention_factor = 0.0;  // 0: scheme default
  double mscale = 0.0;
  double mscale_all_dim = 0.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double ext_factor = 1.0;
  double attn_factor = 1.0;
  std::string short_factors, long_factors;
  int max_position_embeddings = 0;

  void add_to(CLI::App& app) {
    app.add_option("--rope,--type", type, "RoPE scaling: default linear ntk dynamic yarn yarn-ggml llama3 longrope")
        ->check(CLI::IsMember({"default", "none", "linear", "ntk", "dynamic", "yarn", "yarn-ggml", "llama3", "longrope"}));
    app.add_option("--factor", factor, "context extension factor s")->check(finite_positive);
    app.add_option("--beta-fast", beta_fast, "YaRN beta_fast (rotations)")->check(finite_positive);
    app.add_option("--beta-slow", beta_slow, "YaRN beta_slow (rotations)")->check(finite_positive);
    app.add_flag("--no-truncate", no_truncate, "YaRN: keep the fractional correction range (HF truncate=false)");
    app.add_option("--attention-factor", attention_factor, "explicit attention factor (yarn, longrope)")
        ->check(finite_positive);
    app.add_option("--mscale", mscale, "YaRN mscale");
    app.add_option("--mscale-all-dim", mscale_all_dim, "YaRN mscale_all_dim");
    app.add_option("--low-freq-factor", low_freq_factor, "llama3 low_freq_factor")->check(finite_positive);
    app.add_option("--high-freq-factor", high_freq_factor, "llama3 high_freq_factor")->check(finite_positive);
    app.add_option("--ext-factor", ext_factor, "yarn-ggml ext_factor");
    app.add_option("--attn-factor", attn_factor, "yarn-ggml attn_factor")->check(finite_positive);
    app.add_option("--short-factors", short_factors, "longrope short factors, comma-separated");
    app.add_option("--long-factors", long_factors, "longrope long factors, comma-separated");
    app.add_option("--max-position-embeddings", max_position_embeddings, "dynamic NTK: Lmax (default: original ctx)")
        ->check(CLI::PositiveNumber);
  }

  static std::vector<double> parse_list(const std::string& s, const char* what) {
    std::vector<double> out;
    std::size_t pos = 0;
    while (pos < s.size()) {
      auto comma = s.find(',', pos);
      if (comma == std::string::npos) comma = s.size();
      const std::string item = s.substr(pos, comma - pos);
      std::size_t used = 0;
      double v = 0;
      try {
        v = std::stod(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != item.size()) throw usage_error(std::string("bad number '") + item + "' in " + what);
      out.push_back(v);
      pos = comma + 1;
    }
    return out;
  }

  qroar::rope_scaling to_scaling(int original_ctx) const {
    qroar::rope_scaling sc;
    sc.type = qroar::rope_type_from_string(type);
    sc.factor = factor;
    sc.original_ctx = original_ctx;
    sc.max_position_embeddings = max_position_embeddings;
    sc.beta_fast = beta_fast;
    sc.beta_slow = beta_slow;
    sc.truncate = !no_truncate;
    if (attention_factor > 0.0) sc.attention_factor = attention_factor;
    sc.mscale = mscale;
    sc.mscale_all_dim = mscale_all_dim;
    sc.low_freq_factor = low_freq_factor;
    sc.high_freq_factor = high_freq_factor;
    sc.ext_factor = ext_factor;
    sc.attn_factor = attn_factor;
    if (sc.type == qroar::rope_type::longrope) {
      if (short_factors.empty() || long_factors.empty())
        throw usage_error("--rope longrope needs --short-factors and --long-factors");
      sc.short_factor = parse_list(short_factors, "--short-factors");
      sc.long_factor = parse_list(long_factors, "--long-factors");
    }
    return sc;
  }
};

// JSON text that cannot fail: invalid UTF-8 (a non-UTF-8 path, a byte-fallback token piece) becomes U+FFFD instead
// of a nlohmann type_error after the work is done.
template <class Json>
std::string json_text(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// Registry of subcommands: each cmd_*.cpp registers itself with a static `registrar`.
struct command {
  std::string name;
  std::function<void(CLI::App&, std::function<int()>&)> setup;  // adds options, sets the runner
};

inline std::vector<command>& commands() {
  static std::vector<command> all;
  return all;
}

struct registrar {
  explicit registrar(command c) { commands().push_back(std::move(c)); }
};

}  // namespace qroar_cli
