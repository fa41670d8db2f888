// Quantize the embedded demo model in two ways and, for each, ask the library whether symmetric band scaling
// (W_Q rows of a band times g, W_K rows times 1/g) can change the quantizer's output, then measure the perplexity
// cost of the quantization at 2x the trained context (ctx 512, YaRN x2).
// Usage: example_quantize_and_check examples/demo/gutenberg-3m-f16.gguf examples/demo/gutenberg-3m-samples.txt
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
    const qroar::llama_model model = qroar::load_model(argv[1]);  // full precision (f16 weights, computed in f32)
    const auto tok = qroar::load_tokenizer("", argv[1], model.config.vocab_size);  // the GGUF's own vocabulary
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw qroar::io_error(std::string(argv[2]) + ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    const std::vector<int> stream = tok->encode(text.str(), /*bos=*/true);

    // Four bands of 8 RoPE pairs each (16 channels of the 64 in a head, interleaved layout), from the plain
    // RoPE frequencies and the trained context.
    const qroar::rope_dims dims = model.config.rope_geometry();
    const auto bands = qroar::bands_from_spec("equal:4", qroar::inverse_frequencies(qroar::rope_scaling::none(), dims),
                                              model.config.original_ctx);

    // Perplexity at ctx 512 (2x the trained 256) with YaRN x2, on 4 windows; `hooks` quantize the K/V cache.
    auto perplexity = [&](const qroar::llama_model& m, const qroar::forward_hooks* hooks) {
      qroar::perplexity_options o;
      o.ctx = 2 * model.config.original_ctx;
      o.max_windows = 4;
      o.scaling = qroar::rope_scaling::yarn(2.0, model.config.original_ctx);
      o.hooks = hooks;
      return qroar::evaluate_perplexity(m, stream, o).ppl;
    };
    const double fp = perplexity(model, nullptr);
    std::printf("full precision: perplexity %.3f at ctx 512 (yarn x2)\n\n", fp);

    // RTN 4-bit weights (groups of 32 inside a row); 3-bit keys per token in groups of 64 channels (a whole head,
    // so a group spans all 4 bands); the same keys in groups of 16 channels (each group inside one band).
    for (const char* text_spec : {"rtn:w4:g32:sym", "kv:k3:token:g64:post-rope", "kv:k3:token:g16:post-rope"}) {
      const qroar::quant_spec spec = qroar::parse_quant_spec(text_spec);
      const qroar::equivariance_report eq = qroar::is_row_scale_equivariant(spec, bands, dims);

      qroar::llama_model q = model;                              // a copy: quantization edits weights in place
      qroar::quantize_weights(q, spec.weights);                  // no-op for a KV-only spec
      const qroar::forward_hooks hooks = qroar::make_quant_hooks(spec, q.config);  // empty for weight-only specs
      const double ppl = perplexity(q, hooks.any() ? &hooks : nullptr);

      std::printf("%s\n", text_spec);
      std::printf("  symmetric scaling is a no-op: %s\n", eq.symmetric_is_noop() ? "yes" : "no");
      std::printf("  weights: %s\n  kv cache: %s\n", eq.weights_reason.c_str(), eq.kv_reason.c_str());
      std::printf("  perplexity %.3f (%+.2f%% vs full precision)\n\n", ppl, 100.0 * (ppl / fp - 1.0));
    }
    return 0;
  } catch (const qroar::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
