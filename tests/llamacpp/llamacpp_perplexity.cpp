// llamacpp_perplexity: perplexity of a GGUF over a token-id file through llama.cpp's own library, scored exactly as
// `qroar eval --tokens` (docs/evaluation.md). JSON on stdout.
//
//   llamacpp_perplexity --lib DIR --model F.gguf --tokens ids.txt --ctx N [--stride S] [--max-windows K]
//                       [--threads T] [--f16-cache] [--flash-attn]
//                       [--rope file|none|linear|yarn] [--freq-base B] [--freq-scale S] [--yarn-ext-factor E]
//                       [--yarn-attn-factor A] [--yarn-beta-fast F] [--yarn-beta-slow S] [--yarn-orig-ctx L0]
//
// --lib defaults to $QROAR_LLAMACPP_DIR. Exit 0 on success, 1 on failure, 2 on a usage error.
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llamacpp.hpp"

namespace {

std::vector<int> read_ids(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw llamacpp::error("cannot open " + path);
  std::vector<int> ids;
  long long v;
  while (in >> v) ids.push_back(static_cast<int>(v));
  if (!in.eof()) throw llamacpp::error(path + ": not a whitespace-separated list of token ids");
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  const char* env = std::getenv("QROAR_LLAMACPP_DIR");
  if (env) a["--lib"] = env;
  a["--rope"] = "file";
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--f16-cache" || k == "--flash-attn") {
      a[k] = "1";
    } else if (k.rfind("--", 0) == 0 && i + 1 < argc) {
      a[k] = argv[++i];
    } else {
      std::cerr << "llamacpp_perplexity: unexpected argument '" << k << "'\n";
      return 2;
    }
  }
  for (const char* req : {"--lib", "--model", "--tokens", "--ctx"})
    if (!a.count(req)) {
      std::cerr << "llamacpp_perplexity: " << req << " is required\n";
      return 2;
    }
  try {
    auto& lib = llamacpp::library::open(a["--lib"]);
    llamacpp::context_options o;
    o.ctx = std::stoi(a["--ctx"]);
    if (a.count("--threads")) o.threads = std::stoi(a["--threads"]);
    o.f32_cache = !a.count("--f16-cache");
    o.flash_attention = a.count("--flash-attn") > 0;
    using rt = llamacpp::rope_override::type;
    const std::string rope = a["--rope"];
    o.rope.kind = rope == "none" ? rt::none : rope == "linear" ? rt::linear : rope == "yarn" ? rt::yarn : rt::from_file;
    if (rope != "file" && rope != "none" && rope != "linear" && rope != "yarn") {
      std::cerr << "llamacpp_perplexity: --rope must be file, none, linear or yarn\n";
      return 2;
    }
    auto f = [&](const char* k, float& dst) {
      if (a.count(k)) dst = std::stof(a[k]);
    };
    f("--freq-base", o.rope.freq_base);
    f("--freq-scale", o.rope.freq_scale);
    f("--yarn-ext-factor", o.rope.ext_factor);
    f("--yarn-attn-factor", o.rope.attn_factor);
    f("--yarn-beta-fast", o.rope.beta_fast);
    f("--yarn-beta-slow", o.rope.beta_slow);
    if (a.count("--yarn-orig-ctx")) o.rope.orig_ctx = static_cast<std::uint32_t>(std::stoul(a["--yarn-orig-ctx"]));
    const int stride = a.count("--stride") ? std::stoi(a["--stride"]) : 0;
    const int max_windows = a.count("--max-windows") ? std::stoi(a["--max-windows"]) : 0;
    const auto tokens = read_ids(a["--tokens"]);
    const auto r = llamacpp::perplexity(lib, a["--model"], tokens, o, stride, max_windows);
    nlohmann::ordered_json j;
    j["mean_nll"] = r.mean_nll;
    j["ppl"] = std::exp(r.mean_nll);
    j["tokens_scored"] = r.tokens_scored;
    j["windows"] = r.windows;
    j["window_mean_nll"] = r.window_mean_nll;
    j["n_ctx_train"] = r.n_ctx_train;
    j["load_seconds"] = r.load_seconds;
    j["eval_seconds"] = r.eval_seconds;
    j["eval_tokens_per_second"] = r.eval_seconds > 0 ? static_cast<double>(r.windows) * o.ctx / r.eval_seconds : 0.0;
    j["warnings"] = r.warnings;
    j["llama_cpp"] = lib.build_info();
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "llamacpp_perplexity: " << e.what() << "\n";
    return 1;
  }
}
