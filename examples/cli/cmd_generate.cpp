// qroar generate: text continuation with the KV-cache decode path (greedy unless --temperature > 0).
#include "cli_model.hpp"

#include <iostream>
#include <random>

namespace {

struct generate_options {
  qroar_cli::model_options model;
  std::string prompt;
  int steps = 128;
  double temperature = 0.0;
  unsigned seed = 42;
  CLI::Option* seed_opt = nullptr;
};

int run_generate(const generate_options& o) {
  o.model.check_flags("generate");
  o.model.refuse("generate", {"--quant", "--recipe", "--bands"},
                 "generate decodes the weights as they are (write a quantized model with `qroar quantize`, then "
                 "generate with it)");
  if (o.seed_opt->count() > 0 && o.temperature <= 0.0)
    throw qroar_cli::usage_error("--seed needs --temperature > 0 (greedy decoding draws no random numbers)");
  (void)o.model.tokenizer();
  const auto model = o.model.load_model();
  const auto* tok = &o.model.tokenizer(model.config.vocab_size);
  std::vector<int> ids = tok->encode(o.prompt, true);
  if (ids.empty()) throw qroar_cli::usage_error("the prompt is empty and the tokenizer adds no BOS: pass --prompt");
  const int capacity = static_cast<int>(ids.size()) + o.steps;
  const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), o.model.scaling(model), capacity);
  qroar::kv_cache cache(model.config, capacity);
  std::mt19937 rng(o.seed);
  std::string out;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] != tok->bos_id()) out += tok->decode(i > 0 ? ids[i - 1] : -1, ids[i]);
  std::vector<int> pending = ids;
  int prev = ids.back();
  for (int step = 0; step < o.steps; ++step) {
    const auto hidden = qroar::forward_hidden(model, pending, cache, table, o.model.threads);
    const Eigen::VectorXf logits = model.classifier() * hidden.row(hidden.rows() - 1).transpose();
    int next = 0;
    if (o.temperature <= 0.0) {
      logits.maxCoeff(&next);
    } else {
      std::vector<double> p(static_cast<std::size_t>(logits.size()));
      const float mx = logits.maxCoeff();
      for (Eigen::Index v = 0; v < logits.size(); ++v)
        p[static_cast<std::size_t>(v)] = std::exp((logits(v) - mx) / o.temperature);
      next = std::discrete_distribution<int>(p.begin(), p.end())(rng);
    }
    if (next == tok->eos_id() || next == tok->bos_id()) break;
    out += tok->decode(prev, next);
    prev = next;
    pending = {next};
  }
  if (o.model.json) {
    std::cout << qroar_cli::json_text(nlohmann::json{{"prompt", o.prompt}, {"text", out}}) << "\n";
  } else {
    std::cout << out << "\n";
  }
  return 0;
}

const qroar_cli::registrar register_generate{{"generate", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<generate_options>();
  app.description("Continue a prompt with the model (greedy by default)");
  app.footer("Example:\n  qroar generate --model stories260K.bin --prompt \"Once upon a time\" --steps 64");
  o->model.add_to(app, /*needs_text=*/false);
  app.add_option("--prompt", o->prompt, "prompt text (may be empty: start from BOS)");
  app.add_option("--steps", o->steps, "tokens to generate")->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", o->temperature, "sampling temperature (0: greedy)")->check(qroar_cli::finite_non_negative);
  o->seed_opt = app.add_option("--seed", o->seed, "random seed for sampling");
  run = [o] { return run_generate(*o); };
}}};

}  // namespace
