// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace qroar {
inline namespace v0 {
namespace detail {

// Denormal (subnormal) floats take a microcode assist on x86 for every operation that reads or produces one
// (~100x slower): a model whose weights lie in the denormal range evaluated ~80x slower. Every compute thread
// therefore runs with flush-to-zero (a denormal result becomes 0) and denormals-are-zero (a denormal input reads as
// 0): x86 MXCSR bits 15 (FTZ) and 6 (DAZ); AArch64 FPCR bit 24 (FZ, both). The pool's helper threads set them for
// good; the thread that opens a computation sets them for its duration and restores its own mode after
// (flush_denormals_scope). Effect on results: a denormal weight or activation acts as 0, exactly as if the model had
// been flushed up front (tests/model/test_denormals.cpp); normal values are unaffected.
#if defined(__x86_64__) || defined(__i386__)
inline constexpr unsigned denormal_mode_bits = 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
inline unsigned read_fp_mode() noexcept { return _mm_getcsr(); }
inline void write_fp_mode(unsigned m) noexcept { _mm_setcsr(m); }
#elif defined(__aarch64__)
inline constexpr std::uint64_t denormal_mode_bits = std::uint64_t{1} << 24;  // FPCR.FZ
inline std::uint64_t read_fp_mode() noexcept {
  std::uint64_t v;
  asm volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
inline void write_fp_mode(std::uint64_t v) noexcept { asm volatile("msr fpcr, %0" : : "r"(v)); }
#endif

// Whether this thread flushes denormals now.
inline bool denormals_flushed() noexcept {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  return (read_fp_mode() & denormal_mode_bits) == denormal_mode_bits;
#else
  return false;
#endif
}

// Sets flush-to-zero / denormals-are-zero in this thread for good (pool threads).
inline void flush_denormals() noexcept {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  write_fp_mode(read_fp_mode() | denormal_mode_bits);
#endif
}

// Sets them for the lifetime of the scope, then restores the thread's previous mode (a caller's own floating-point
// code after a qroar call behaves as before).
class flush_denormals_scope {
 public:
  flush_denormals_scope() noexcept {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
    saved_ = read_fp_mode();
    write_fp_mode(saved_ | denormal_mode_bits);
#endif
  }
  ~flush_denormals_scope() {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
    write_fp_mode(saved_);
#endif
  }
  flush_denormals_scope(const flush_denormals_scope&) = delete;
  flush_denormals_scope& operator=(const flush_denormals_scope&) = delete;

 private:
#if defined(__x86_64__) || defined(__i386__)
  unsigned saved_ = 0;
#elif defined(__aarch64__)
  std::uint64_t saved_ = 0;
#endif
};

}  // namespace detail
}  // namespace v0
}  // namespace qroar
