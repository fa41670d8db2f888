// SPDX-License-Identifier: MIT
#pragma once

#include <cstdio>
#include <cstdlib>

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "qroar requires C++17 or later"
#endif

// Programmer errors (violated preconditions) go through QROAR_ASSERT. Define it before including qroar
// to throw, log or trap instead; the tests make it throw. Bad user input never uses it: that throws
// qroar::error (error.hpp).
#ifndef QROAR_ASSERT
#define QROAR_ASSERT(cond, msg)                                                                     \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      std::fprintf(stderr, "%s:%d: qroar assertion failed: %s (%s)\n", __FILE__, __LINE__, #cond, msg); \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (false)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QROAR_RESTRICT __restrict__
#else
#define QROAR_RESTRICT
#endif
