// Q-ROAR in a few calls: search per-band W_Q/W_K scales for the demo model extended to 4x its trained context
// (NTK x4, ctx 1024) under a 3-bit K cache, fold them into the weights, and compare held-out perplexity.
// Usage: example_search_and_apply examples/demo/gutenberg-3m-f16.gguf examples/demo/gutenberg-3m-samples.txt
#include <qroar/qroar.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TEXT.txt\n", argv[0]);
    return 2;
  }
  try {
    const qroar::llama_model model = qroar::load_model(argv[1]);  // full precision: the search starts from it
    const auto tok = qroar::load_tokenizer("", argv[1], model.config.vocab_size);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw qroar::io_error(std::string(argv[2]) + ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    const std::vector<int> stream = tok->encode(text.str(), /*bos=*/true);
    const int ctx = 4 * model.config.original_ctx;  // 1024
    if (stream.size() < 6u * ctx) throw qroar::invalid_argument("the text needs at least 6 windows of 1024 tokens");
    auto window = [&](int k) { return std::vector<int>(stream.begin() + k * ctx, stream.begin() + (k + 1) * ctx); };

    // The deployment: NTK x4 context extension, keys quantized to 3 bits per token in groups of a whole head.
    qroar::search_options o;
    o.scaling = qroar::rope_scaling::ntk(4.0);
    o.quant = qroar::parse_quant_spec("kv:k3:token:g64:post-rope");
    o.bands = qroar::bands_equal(4, qroar::inverse_frequencies(qroar::rope_scaling::none(), model.config.rope_geometry()),
                                 model.config.original_ctx);
    o.variant = qroar::scale_variant::independent;  // separate W_Q and W_K factors per band
    o.grid_min = 0.25, o.grid_max = 4.0, o.grid_points = 5;  // candidate factors 0.25 0.5 1 2 4
    const qroar::search_result r = qroar::search_band_scales(model, {window(0), window(1)}, o);  // 2 dev windows
    if (r.skipped) throw qroar::invalid_argument("search skipped: " + r.message);
    std::printf("search: %d evaluations, dev NLL %.4f -> %.4f\n", r.evaluations, r.baseline_objective, r.final_objective);
    for (std::size_t b = 0; b < o.bands.size(); ++b)
      std::printf("  band %zu (pairs %2d-%2d): W_Q x%.3g, W_K x%.3g\n", b, o.bands[b].first_pair, o.bands[b].last_pair,
                  r.scales.query_factor(0, 0, static_cast<int>(b)), r.scales.key_factor(0, 0, static_cast<int>(b)));

    // Apply: multiply the W_Q/W_K rows of a copy in place. The K-cache quantizer is a forward hook.
    qroar::llama_model scaled = model;
    qroar::apply_band_scales(scaled, r.scales);
    const qroar::forward_hooks hooks = qroar::make_quant_hooks(o.quant, model.config);

    // Held-out perplexity on windows 2-5, which the search never saw.
    const std::vector<int> held_out(stream.begin() + 2 * ctx, stream.begin() + 6 * ctx);
    auto ppl = [&](const qroar::llama_model& m, const qroar::forward_hooks* h) {
      qroar::perplexity_options p;
      p.ctx = ctx;
      p.scaling = o.scaling;
      p.hooks = h;
      return qroar::evaluate_perplexity(m, held_out, p).ppl;
    };
    std::printf("held-out perplexity at ctx %d (ntk x4, 4 windows):\n", ctx);
    std::printf("  full precision         %8.3f\n", ppl(model, nullptr));
    std::printf("  K3 cache               %8.3f\n", ppl(model, &hooks));
    std::printf("  K3 cache + band scales %8.3f\n", ppl(scaled, &hooks));

    // Why the search needs a quantizer: symmetric scales (W_Q x g, W_K x 1/g) leave the full-precision logits
    // unchanged, q.k being invariant. With power-of-two factors every product is exact, so the difference is 0.
    qroar::band_scales sym(o.bands, qroar::scale_variant::symmetric, qroar::scale_granularity::global,
                           model.config.n_layers, model.config.n_kv_heads);
    for (int b = 0; b < static_cast<int>(o.bands.size()); ++b) sym.set(/*unit=*/0, b, b % 2 ? 0.5 : 2.0);  // key = 1/q
    qroar::llama_model sym_model = model;
    qroar::apply_band_scales(sym_model, sym);
    const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), o.scaling, ctx);
    const qroar::tensor diff = qroar::forward_logits(model, window(3), table) - qroar::forward_logits(sym_model, window(3), table);
    std::printf("symmetric scales x2/x0.5, full precision: max |logit diff| %.3g\n", diff.cwiseAbs().maxCoeff());
    return 0;
  } catch (const qroar::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
