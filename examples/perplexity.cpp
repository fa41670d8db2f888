// Perplexity of the embedded demo model (trained at 256 tokens) at its trained context and at 4x that context,
// with plain RoPE and with two x4 position-interpolation schemes (NTK and YaRN).
// Usage: example_perplexity examples/demo/gutenberg-3m-f16.gguf examples/demo/gutenberg-3m-samples.txt
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
    // 1. Load the model (any format: GGUF, llama2.c, HF folder) and the tokenizer stored in the GGUF itself.
    const qroar::llama_model model = qroar::load_model(argv[1]);
    const auto tok = qroar::load_tokenizer(/*tokenizer_path=*/"", argv[1], model.config.vocab_size);
    const int l0 = model.config.original_ctx;  // trained context: 256 for the demo model
    std::printf("model: %d layers, %d heads, head_dim %d, trained context %d\n", model.config.n_layers,
                model.config.n_heads, model.config.head_size(), l0);

    // 2. Read the text and turn it into one token stream (BOS first; the stream is cut into windows below).
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw qroar::io_error(std::string(argv[2]) + ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    const std::vector<int> stream = tok->encode(text.str(), /*bos=*/true);
    std::printf("text: %zu tokens\n\n", stream.size());

    // 3. Evaluate perplexity on the first 4096 tokens: 16 windows of 256, or 4 windows of 1024 (4x the trained
    //    context). A scaling maps positions 0..1023 back into the range the model saw in training.
    struct setting { int ctx; const char* name; qroar::rope_scaling scaling; };
    const setting settings[] = {
        {l0, "none", qroar::rope_scaling::none()},                 // what the model was trained for
        {4 * l0, "none", qroar::rope_scaling::none()},             // plain RoPE beyond the trained context
        {4 * l0, "ntk x4", qroar::rope_scaling::ntk(4.0)},          // NTK-aware: raises the RoPE base
        {4 * l0, "yarn x4", qroar::rope_scaling::yarn(4.0, l0)},    // YaRN: per-band interpolation + attention factor
    };
    std::printf("%-6s %-8s %8s %8s %11s\n", "ctx", "rope", "windows", "tokens", "perplexity");
    for (const setting& s : settings) {
      qroar::perplexity_options o;
      o.ctx = s.ctx;                  // window length; stride defaults to ctx (non-overlapping windows)
      o.max_windows = 4096 / s.ctx;   // keep the example fast: the same 4096 tokens in every row
      o.scaling = s.scaling;
      const qroar::perplexity_result r = qroar::evaluate_perplexity(model, stream, o);
      std::printf("%-6d %-8s %8d %8lld %11.3f\n", s.ctx, s.name, r.windows, r.tokens_scored, r.ppl);
    }
    return 0;
  } catch (const qroar::error& e) {   // every qroar exception: bad file, bad argument, ...
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
