// Helpers shared by the kernel tests (tests/kernels/test_*.cpp): the target arch, aligned buffers, float epsilon
// (every tolerance of these tests is a multiple of it) and Gaussian test tensors.
#pragma once

#include <limits>
#include <random>
#include <vector>

#include <xsimd/xsimd.hpp>

#include <qroar/tensor.hpp>

namespace qroar_kernels_test {

using arch = xsimd::default_arch;
using aligned_floats = std::vector<float, xsimd::aligned_allocator<float, 64>>;
inline constexpr float eps = std::numeric_limits<float>::epsilon();

inline qroar::tensor random_tensor(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  qroar::tensor t(rows, cols);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = nd(rng);
  return t;
}

}  // namespace qroar_kernels_test
