// SPDX-License-Identifier: MIT
// Band-scales JSON files (read_band_scales), validated against the stories260K geometry (5 layers, 8 heads,
// 4 KV heads, head_dim 8, trained context 512) and, when accepted, applied to a zero model of that shape.
#include <qroar/search/band_scales.hpp>
#include <qroar/search/scales_json.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  static const qroar::llama_config config = [] {
    qroar::llama_config c;
    c.dim = 64;
    c.hidden_dim = 172;
    c.n_layers = 5;
    c.n_heads = 8;
    c.n_kv_heads = 4;
    c.vocab_size = 512;
    c.original_ctx = 512;
    return c;
  }();
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const qroar::band_scales s = qroar::read_band_scales(path, config);
    std::vector<float> q, k;
    for (int l = 0; l < config.n_layers; ++l) qroar::band_row_factors(s, config, l, q, k);
  });
  return 0;
}
