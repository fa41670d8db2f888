// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../error.hpp"
#include "layout.hpp"

namespace qroar {
inline namespace v0 {

// A frequency band: a contiguous range of RoPE pairs of one head (pairs are ordered from the highest
// frequency, j = 0, to the lowest). Wavelength lambda_j = 2*pi / theta_j tokens; rotations r_j = L0 / lambda_j
// completed inside the trained context L0.
struct band {
  int first_pair = 0;
  int last_pair = 0;  // inclusive
  double min_wavelength = 0.0;
  double max_wavelength = 0.0;
  double min_rotations = 0.0;  // over the trained context, of the band's lowest-frequency pair
  double max_rotations = 0.0;  // of its highest-frequency pair
  std::string name;            // "high", "transition", "low" for by-wavelength partitions, else "band<k>"

  int size() const noexcept { return last_pair - first_pair + 1; }
  bool contains(int pair) const noexcept { return pair >= first_pair && pair <= last_pair; }
};

// A partition of the pairs 0 .. n_pairs-1 of a head into contiguous bands that cover every pair exactly once.
struct band_partition {
  std::vector<band> bands;
  int n_pairs = 0;

  std::size_t size() const noexcept { return bands.size(); }
  const band& operator[](std::size_t i) const { return bands[i]; }

  // Index of the band holding pair j.
  int band_of(int pair) const {
    for (std::size_t b = 0; b < bands.size(); ++b)
      if (bands[b].contains(pair)) return static_cast<int>(b);
    QROAR_ASSERT(false, "pair not covered by the band partition");
    return -1;
  }
};

namespace detail {

// Fills the wavelength and rotation fields of a band from the frequencies the partition was built on.
inline band describe_band(int first, int last, const std::vector<double>& inv_freq, int original_ctx,
                          std::string name) {
  const double two_pi = 6.283185307179586476925;
  band b;
  b.first_pair = first;
  b.last_pair = last;
  b.name = std::move(name);
  // theta_j decreases with j, so the first pair has the shortest wavelength.
  b.min_wavelength = two_pi / inv_freq[static_cast<std::size_t>(first)];
  b.max_wavelength = two_pi / inv_freq[static_cast<std::size_t>(last)];
  b.max_rotations = original_ctx > 0 ? original_ctx / b.min_wavelength : 0.0;
  b.min_rotations = original_ctx > 0 ? original_ctx / b.max_wavelength : 0.0;
  return b;
}

inline void check_frequencies(const std::vector<double>& inv_freq) {
  if (inv_freq.empty()) throw invalid_argument("band partition needs at least one RoPE pair");
  for (std::size_t j = 0; j < inv_freq.size(); ++j) {
    if (!(inv_freq[j] > 0.0) || !std::isfinite(inv_freq[j]))
      throw invalid_argument("band partition needs positive finite frequencies");
    if (j > 0 && inv_freq[j] > inv_freq[j - 1])
      throw invalid_argument("band partition needs frequencies that do not increase with the pair index");
  }
}

}  // namespace detail

// Bands from explicit edges: `first_pairs` are the first pair of each band, strictly increasing, starting at 0
// (e.g. {0, 8, 16, 24} for four bands of eight pairs out of 32).
inline band_partition bands_from_edges(const std::vector<int>& first_pairs, const std::vector<double>& inv_freq,
                                       int original_ctx) {
  detail::check_frequencies(inv_freq);
  const int n = static_cast<int>(inv_freq.size());
  if (first_pairs.empty() || first_pairs.front() != 0)
    throw invalid_argument("band edges must start at pair 0");
  for (std::size_t b = 0; b < first_pairs.size(); ++b)
    if (first_pairs[b] < 0 || first_pairs[b] >= n)
      throw invalid_argument("band edge " + std::to_string(first_pairs[b]) + " is outside the pairs 0.." +
                             std::to_string(n - 1));
  band_partition p;
  p.n_pairs = n;
  for (std::size_t b = 0; b < first_pairs.size(); ++b) {
    const int first = first_pairs[b];
    const int last = b + 1 < first_pairs.size() ? first_pairs[b + 1] - 1 : n - 1;
    if (first >= n) throw invalid_argument("band edge " + std::to_string(first) + " is beyond the last pair " +
                                           std::to_string(n - 1));
    if (last < first) throw invalid_argument("band edges must be strictly increasing");
    p.bands.push_back(detail::describe_band(first, last, inv_freq, original_ctx, "band" + std::to_string(b)));
  }
  return p;
}

// n bands with equal numbers of pairs (the first n_pairs % n bands take one more). Since theta_j is
// log-spaced in j, these are bands of equal width in log-frequency.
inline band_partition bands_equal(int n_bands, const std::vector<double>& inv_freq, int original_ctx) {
  const int n = static_cast<int>(inv_freq.size());
  if (n_bands < 1 || n_bands > n)
    throw invalid_argument("number of bands must be in [1, " + std::to_string(n) + "], got " +
                           std::to_string(n_bands));
  std::vector<int> edges;
  int first = 0;
  for (int b = 0; b < n_bands; ++b) {
    edges.push_back(first);
    first += n / n_bands + (b < n % n_bands ? 1 : 0);
  }
  return bands_from_edges(edges, inv_freq, original_ctx);
}

// YaRN-style bands by rotations r_j = L0 / lambda_j inside the trained context (Peng et al. 2023, sec. 3.2):
// "high" (r > beta_fast: many rotations, left alone by YaRN), "transition" (beta_slow <= r <= beta_fast),
// "low" (r < beta_slow: less than beta_slow rotation, interpolated). Empty bands are omitted.
inline band_partition bands_by_wavelength(const std::vector<double>& inv_freq, int original_ctx,
                                          double beta_fast = 32.0, double beta_slow = 1.0) {
  detail::check_frequencies(inv_freq);
  if (original_ctx <= 0) throw invalid_argument("bands by wavelength need the trained context length");
  if (!(beta_fast > beta_slow) || !(beta_slow > 0.0))
    throw invalid_argument("bands by wavelength need beta_fast > beta_slow > 0");
  const double two_pi = 6.283185307179586476925;
  const int n = static_cast<int>(inv_freq.size());
  auto klass = [&](int j) {
    const double r = original_ctx * inv_freq[static_cast<std::size_t>(j)] / two_pi;
    return r > beta_fast ? 0 : (r >= beta_slow ? 1 : 2);
  };
  static const char* names[] = {"high", "transition", "low"};
  band_partition p;
  p.n_pairs = n;
  int first = 0;
  for (int j = 1; j <= n; ++j) {
    if (j == n || klass(j) != klass(first)) {
      p.bands.push_back(detail::describe_band(first, j - 1, inv_freq, original_ctx, names[klass(first)]));
      first = j;
    }
  }
  return p;
}

// Parses "by-wavelength", "equal:N" or "edges:0,8,16" (first pair of each band).
inline band_partition bands_from_spec(const std::string& spec, const std::vector<double>& inv_freq, int original_ctx,
                                      double beta_fast = 32.0, double beta_slow = 1.0) {
  auto parse_int = [&](const std::string& s) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) throw invalid_argument("bad number '" + s + "' in band spec '" + spec + "'");
    return v;
  };
  if (spec == "by-wavelength" || spec == "yarn") return bands_by_wavelength(inv_freq, original_ctx, beta_fast, beta_slow);
  if (spec.rfind("equal:", 0) == 0) return bands_equal(parse_int(spec.substr(6)), inv_freq, original_ctx);
  if (spec.rfind("edges:", 0) == 0) {
    std::vector<int> edges;
    std::string rest = spec.substr(6);
    std::size_t pos = 0;
    while (pos <= rest.size()) {
      const auto comma = rest.find(',', pos);
      edges.push_back(parse_int(rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos)));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return bands_from_edges(edges, inv_freq, original_ctx);
  }
  throw invalid_argument("unknown band spec '" + spec + "' (expected by-wavelength, equal:N or edges:a,b,c)");
}

}  // namespace v0
}  // namespace qroar
