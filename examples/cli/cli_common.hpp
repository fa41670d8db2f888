// Shared pieces of the qroar command line: option groups, usage errors, JSON output.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <qroar/qroar.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <sys/stat.h>

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

// An input path that exists. Only a path that is not there (ENOENT, ENOTDIR) fails here, as a usage error (exit 2);
// one that exists but cannot be read (EACCES, ...) passes, so the loader reports why (exit 1). CLI::ExistingPath
// calls both "does not exist".
inline const CLI::Validator existing_path(
    [](std::string& s) -> std::string {
      struct stat st {};
      if (::stat(s.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) return "Path does not exist: " + s;
      return {};
    },
    "PATH(existing)");
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

  // Each parameter flag with the --rope types that read it (names as rope_type_from_string spells them).
  struct parameter {
    CLI::Option* option;
    std::vector<std::string> types;
  };
  std::vector<parameter> parameters;
  CLI::Option* type_option = nullptr;

  void add_to(CLI::App& app) {
    type_option = app.add_option("--rope,--type", type, "RoPE scaling: default linear ntk dynamic yarn yarn-ggml llama3 longrope")
        ->check(CLI::IsMember({"default", "none", "linear", "ntk", "dynamic", "yarn", "yarn-ggml", "llama3", "longrope"}));
    auto param = [&](CLI::Option* opt, std::vector<std::string> types) { parameters.push_back({opt, std::move(types)}); };
    const std::vector<std::string> scaled = {"linear", "ntk", "dynamic", "yarn", "yarn-ggml", "llama3", "longrope"};
    param(app.add_option("--factor", factor, "context extension factor s")->check(finite_positive), scaled);
    param(app.add_option("--beta-fast", beta_fast, "YaRN beta_fast (rotations)")->check(finite_positive), {"yarn", "yarn-ggml"});
    param(app.add_option("--beta-slow", beta_slow, "YaRN beta_slow (rotations)")->check(finite_positive), {"yarn", "yarn-ggml"});
    param(app.add_flag("--no-truncate", no_truncate, "YaRN: keep the fractional correction range (HF truncate=false)"),
          {"yarn"});
    param(app.add_option("--attention-factor", attention_factor,
                         "explicit attention factor (yarn, longrope; default: the scheme's)")
              ->check(finite_positive),
          {"yarn", "longrope"});
    param(app.add_option("--mscale", mscale, "YaRN mscale"), {"yarn"});
    param(app.add_option("--mscale-all-dim", mscale_all_dim, "YaRN mscale_all_dim"), {"yarn"});
    param(app.add_option("--low-freq-factor", low_freq_factor, "llama3 low_freq_factor")->check(finite_positive),
          {"llama3"});
    param(app.add_option("--high-freq-factor", high_freq_factor, "llama3 high_freq_factor")->check(finite_positive),
          {"llama3"});
    param(app.add_option("--ext-factor", ext_factor, "yarn-ggml ext_factor"), {"yarn-ggml"});
    param(app.add_option("--attn-factor", attn_factor, "yarn-ggml attn_factor")->check(finite_positive), {"yarn-ggml"});
    param(app.add_option("--short-factors", short_factors, "longrope short factors, comma-separated"), {"longrope"});
    param(app.add_option("--long-factors", long_factors, "longrope long factors, comma-separated"), {"longrope"});
    param(app.add_option("--max-position-embeddings", max_position_embeddings,
                         "dynamic NTK: Lmax (default: original ctx; written as config.json max_position_embeddings)")
              ->check(CLI::PositiveNumber),
          {"dynamic"});
  }

  // A parameter flag that would be silently ignored is a usage error naming the conflict: given with
  // --rope-config (the file gives the scaling), without --rope (`needs_type`: the scaling is then the model
  // file's), or with a --rope type that does not read it. `also_used` names flags read elsewhere (qroar rope's
  // --bands by-wavelength reads --beta-fast / --beta-slow).
  void check_parameters(bool rope_config, bool needs_type = true, const std::vector<std::string>& also_used = {}) const {
    const std::string t = type == "none" ? "default" : type;
    for (const auto& p : parameters) {
      if (p.option->count() == 0) continue;
      const std::string name = p.option->get_name();  // the long name
      if (std::find(also_used.begin(), also_used.end(), name) != also_used.end()) continue;
      if (rope_config)
        throw usage_error(name + " conflicts with --rope-config: the file gives the whole scaling (put the value "
                          "in the file, or use --rope TYPE " + name + " instead)");
      if (needs_type && type_option->count() == 0)
        throw usage_error(name + " needs --rope TYPE: without --rope the scaling is the one the model file records, "
                          "and " + name + " would be ignored");
      if (std::find(p.types.begin(), p.types.end(), t) == p.types.end()) {
        std::string readers;
        for (const auto& r : p.types) readers += (readers.empty() ? "" : ", ") + r;
        throw usage_error(name + " has no effect with --rope " + type + " (read by: " + readers + ")");
      }
    }
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

// What `--text` (and a text --calib / --dev / --validation file) must be. A file is "not text" when its first
// text_probe_bytes hold a NUL byte, or when more than 1/text_max_bad_fraction of them are control bytes (other than
// tab, LF, VT, FF, CR and ESC) or bytes of invalid UTF-8 (a sequence cut by the end of the block is not counted).
// Throws format_error naming the file and the offset of the first offending byte.
inline constexpr std::size_t text_probe_bytes = 64 * 1024;
inline constexpr std::size_t text_max_bad_fraction = 10;
inline void require_text(const std::string& path, const unsigned char* p, std::size_t size) {
  const std::size_t n = std::min(size, text_probe_bytes);
  std::size_t bad = 0, first_bad = n;
  auto mark = [&](std::size_t at, std::size_t count) {
    if (first_bad == n) first_bad = at;
    bad += count;
  };
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c == 0) throw qroar::format_error(path, "", i, "not text: a NUL byte (a binary file? --text needs UTF-8 text; "
                                                        "token ids go to --tokens)");
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\v' && c != '\f' && c != '\r' && c != 0x1B) || c == 0x7F) mark(i, 1);
      ++i;
      continue;
    }
    // UTF-8: lead byte, expected continuation count, and the smallest code point (overlong forms are invalid)
    const std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? (c <= 0xEF ? 3 : 0) : c >= 0xC2 ? 2 : 0;
    if (len == 0) {
      mark(i, 1);
      ++i;
      continue;
    }
    if (i + len > n) break;  // cut by the end of the block
    std::uint32_t cp = c & (0x7F >> len);
    bool ok = true;
    for (std::size_t k = 1; k < len && ok; ++k) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    ok = ok && !(len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF));
    if (!ok) {
      mark(i, 1);
      ++i;
      continue;
    }
    i += len;
  }
  if (n > 0 && bad * text_max_bad_fraction > n)
    throw qroar::format_error(path, "", first_bad,
                              "not text: " + std::to_string(bad) + " of its first " + std::to_string(n) +
                                  " bytes are control bytes or invalid UTF-8 (a binary file? --text needs UTF-8 text)");
}
inline void require_text_file(const std::string& path) {
  const qroar::mapped_file file(path);
  require_text(path, reinterpret_cast<const unsigned char*>(file.data()), static_cast<std::size_t>(file.size()));
}

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
