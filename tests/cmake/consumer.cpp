// A downstream program: the plain-RoPE identity through the public API.
#include <qroar/qroar.hpp>

#include <cmath>
#include <cstdio>

int main() {
  const qroar::rope_scaling scaling = qroar::rope_scaling::linear(4.0);
  const auto inv_freq = qroar::inverse_frequencies(scaling, qroar::rope_dims{64, 64, 10000.0});
  const double expected = 1.0 / 4.0;  // pair 0: theta_0 = 1, divided by the factor
  std::printf("qroar %s: inv_freq[0] = %g\n", qroar::version_string, inv_freq[0]);
  return std::fabs(inv_freq[0] - expected) < 1e-12 ? 0 : 1;
}
