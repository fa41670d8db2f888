// SPDX-License-Identifier: MIT
#pragma once

namespace qroar {
inline namespace v0 {
namespace detail {

// The value of a float product rounded to float, hidden from the optimiser so that it cannot be contracted
// with a following addition into an FMA. GCC contracts `a*b + c` under its default -ffp-contract=fast when the
// target has FMA (-march=native); reference code that must round the product first (ggml's quantizers, compiled
// without -march flags; the RTN error sums) passes the product through here.
inline float rounded(float x) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || (defined(__i386__) && defined(__SSE_MATH__)))
  __asm__("" : "+x"(x));
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#else
  volatile float v = x;
  x = v;
#endif
  return x;
}

}  // namespace detail
}  // namespace v0
}  // namespace qroar
