// Library quick start (the README's example): YaRN x4 for a head-dim-64 model trained at 256 tokens.
#include <qroar/qroar.hpp>

#include <cstdio>

int main() {
  const qroar::rope_dims dims{/*head_dim=*/64, /*rotary_dim=*/0, /*base=*/10000.0, qroar::pair_layout::interleaved};
  const auto scaling = qroar::rope_scaling::yarn(/*factor=*/4.0, /*original_ctx=*/256);
  const std::vector<double> inv_freq = qroar::inverse_frequencies(scaling, dims);
  const double a = qroar::attention_factor(scaling, dims);
  const auto bands = qroar::bands_equal(4, qroar::inverse_frequencies(qroar::rope_scaling::none(), dims), 256);
  const auto rows = qroar::pair_rows(dims, /*head=*/1, /*pair=*/bands[3].first_pair);
  const auto table = qroar::rope_table::for_positions(dims, scaling, /*n=*/1024);
  std::printf("attention factor %.6f\n", a);
  for (std::size_t b = 0; b < bands.size(); ++b)
    std::printf("band %zu: pairs %d-%d, wavelength %.1f-%.1f tokens\n", b, bands[b].first_pair, bands[b].last_pair,
                bands[b].min_wavelength, bands[b].max_wavelength);
  std::printf("W_Q rows of head 1, pair %d: %d and %d\n", bands[3].first_pair, rows[0], rows[1]);
  std::printf("theta'_31 = %.6g, cos at position 1023 = %.6f\n", inv_freq[31], static_cast<double>(table.cos(1023, 31)));
  return 0;
}
