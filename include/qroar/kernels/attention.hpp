// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../rope/apply.hpp"
#include "../tensor.hpp"

namespace qroar {
inline namespace v0 {
namespace kernels {

// Causal attention of one head over one block of query rows, in three kernels that keep the queries in SIMD lanes:
//
//   attention_logits        sT(j, i) = scale * <rope(q_i, q_first + i), rope(k_j, k_first + j)>
//   causal_softmax          sT(j, i) <- exp(sT(j, i) - max_j' sT(j', i)) for visible keys, 0 otherwise;
//                           inv_sum(i) = 1 / sum_j sT(j, i)
//   attention_weighted_sum  out(i, c) = inv_sum(i) * sum_j sT(j, i) v(j, c)
//
// Shapes: q (m, hd) with row stride ldq; k, v (nk, hd) with strides ldk, ldv; out (m, hd) with stride ldo.
// The logits are stored key-major, transposed: sT (nk, ldt) with ldt >= padded_queries(m); lanes i >= m are
// padding (their queries are zero, their values finite and meaningless). Query i sees keys j < visible + i.
//
// Key-major logits make every step a vertical SIMD operation: the logits are an outer-product GEMM with the
// (rotated, scaled, transposed) query block in lanes and one broadcast key channel per FMA; the softmax max, exp
// and sum run per lane; the weighted sum broadcasts v(j, c) against a row of probabilities. Nothing is packed
// on the key side, so the per-key cost is the FMAs alone (plus the rotation of the key when RoPE is fused).
//
// RoPE fused into the logits (RoFormer, Su et al. 2021, eq. 13): with `rope.table` set, q and k are taken before
// RoPE and rotated by the table rows q_first + i and k_first + j (the table carries the attention factor, so the
// logit carries its square). Both pair layouts are supported. Inside the kernel the channels of both operands are
// reordered to (x of every pair, y of every pair, unrotated channels); a dot product does not depend on a common
// channel order. With `rope.table == nullptr`, q and k are used as given (already rotated).

// Rows of a RoPE table applied inside attention_logits; table == nullptr means q and k are already rotated.
struct rope_rows {
  const rope_table* table = nullptr;
  Eigen::Index q_first = 0;  // table row of query 0
  Eigen::Index k_first = 0;  // table row of key 0
};

// Queries are padded to a multiple of this many lanes (a multiple of every register tile's width).
inline constexpr Eigen::Index query_padding = 32;

inline constexpr Eigen::Index padded_queries(Eigen::Index m) noexcept {
  return (m + query_padding - 1) / query_padding * query_padding;
}

namespace detail {

// Rotates one head vector into the kernel's channel order: dst[0, p) = x', dst[p, 2p) = y', dst[2p, hd) = the
// unrotated channels (p = pairs). With table == nullptr, copies. Scalar; used for the query block and by the refs.
inline void rotate_to_split(const float* src, int hd, const rope_table* table, Eigen::Index row, float scale,
                            float* dst) noexcept {
  if (table == nullptr) {
    for (int c = 0; c < hd; ++c) dst[c] = src[c] * scale;
    return;
  }
  const rope_dims& d = table->dims;
  const int p = d.pairs();
  const float* cs = table->cos.data() + row * table->cos.cols();
  const float* sn = table->sin.data() + row * table->sin.cols();
  for (int t = 0; t < p; ++t) {
    const float x = d.layout == pair_layout::interleaved ? src[2 * t] : src[t];
    const float y = d.layout == pair_layout::interleaved ? src[2 * t + 1] : src[t + p];
    dst[t] = (x * cs[t] - y * sn[t]) * scale;
    dst[p + t] = (x * sn[t] + y * cs[t]) * scale;
  }
  for (int c = 2 * p; c < hd; ++c) dst[c] = src[c] * scale;
}

// The same rotation with SIMD over pairs: interleaved pairs are split into x and y lanes by a complex load.
template <class Arch>
inline void rotate_to_split_simd(const float* src, int hd, const rope_table& table, Eigen::Index row,
                                 float* dst) noexcept {
  using batch = xsimd::batch<float, Arch>;
  using cbatch = xsimd::batch<std::complex<float>, Arch>;
  constexpr int lanes = static_cast<int>(batch::size);
  const rope_dims& d = table.dims;
  const int p = d.pairs();
  const float* cs = table.cos.data() + row * table.cos.cols();
  const float* sn = table.sin.data() + row * table.sin.cols();
  int t = 0;
  for (; t + lanes <= p; t += lanes) {
    batch x, y;
    if (d.layout == pair_layout::interleaved) {
      const cbatch z = cbatch::load_unaligned(reinterpret_cast<const std::complex<float>*>(src + 2 * t));
      x = z.real();
      y = z.imag();
    } else {
      x = batch::load_unaligned(src + t);
      y = batch::load_unaligned(src + p + t);
    }
    const batch c = batch::load_unaligned(cs + t), s = batch::load_unaligned(sn + t);
    xsimd::fms(x, c, y * s).store_unaligned(dst + t);
    xsimd::fma(x, s, y * c).store_unaligned(dst + p + t);
  }
  for (; t < p; ++t) {
    const float x = d.layout == pair_layout::interleaved ? src[2 * t] : src[t];
    const float y = d.layout == pair_layout::interleaved ? src[2 * t + 1] : src[t + p];
    dst[t] = x * cs[t] - y * sn[t];
    dst[p + t] = x * sn[t] + y * cs[t];
  }
  for (int c = 2 * p; c < hd; ++c) dst[c] = src[c];
}

// Register tile of the logits: KT keys x 2 batches of queries. Keys are read at k[kk * ldk + c].
template <int KT, class Arch>
inline void logits_tile(const float* qT, Eigen::Index ldq, const float* k, Eigen::Index ldk, int hd, float* sT,
                        Eigen::Index ldt) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index lanes = static_cast<Eigen::Index>(batch::size);
  batch acc0[KT], acc1[KT];
  for (int kk = 0; kk < KT; ++kk) acc0[kk] = acc1[kk] = batch(0.0f);
  for (int c = 0; c < hd; ++c) {
    const batch a0 = batch::load_aligned(qT + c * ldq), a1 = batch::load_aligned(qT + c * ldq + lanes);
    for (int kk = 0; kk < KT; ++kk) {
      const batch b(k[kk * ldk + c]);
      acc0[kk] = xsimd::fma(a0, b, acc0[kk]);
      acc1[kk] = xsimd::fma(a1, b, acc1[kk]);
    }
  }
  for (int kk = 0; kk < KT; ++kk) {
    acc0[kk].store_unaligned(sT + kk * ldt);
    acc1[kk].store_unaligned(sT + kk * ldt + lanes);
  }
}

template <class Arch>
constexpr int key_tile() noexcept {
  // 2 * KT accumulators + 3 operands must fit the register file: 32 registers with 512-bit vectors, else 16.
  return xsimd::batch<float, Arch>::size >= 16 ? 8 : 6;
}

template <class Arch>
constexpr int channel_tile() noexcept {
  return xsimd::batch<float, Arch>::size >= 16 ? 8 : 6;
}

}  // namespace detail

// Size in floats of the workspace of attention_logits for m queries of head_dim hd (64-byte aligned start
// required): the transposed query block plus one rotated key tile.
inline constexpr std::size_t attention_logits_workspace(Eigen::Index m, int hd) noexcept {
  return static_cast<std::size_t>(padded_queries(m) * hd + 16 * hd);
}

// Logits of a query block against a key block, transposed: sT(j, i), see the top of this file.
// work: attention_logits_workspace(m, hd) floats, 64-byte aligned. m, nk >= 1; hd even.
// FLOPs: 2 * nk * padded_queries(m) * hd (+ the key rotations when RoPE is fused).
struct attention_logits {
  template <class Arch>
  void operator()(Arch, const float* q, Eigen::Index ldq, Eigen::Index m, const float* k, Eigen::Index ldk,
                  Eigen::Index nk, int hd, float scale, const rope_rows& rope, float* sT, Eigen::Index ldt,
                  float* work) const noexcept;
};

template <class Arch>
void attention_logits::operator()(Arch, const float* q, Eigen::Index ldq, Eigen::Index m, const float* k,
                                  Eigen::Index ldk, Eigen::Index nk, int hd, float scale, const rope_rows& rope,
                                  float* sT, Eigen::Index ldt, float* work) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index panel = 2 * static_cast<Eigen::Index>(batch::size);
  constexpr int KT = detail::key_tile<Arch>();
  const Eigen::Index mp = padded_queries(m);
  // qT(c, i): rotated, scaled queries in the kernel's channel order, zero-padded lanes.
  float* qT = work;
  float* krot = work + mp * hd;
  float* row = krot;  // scratch for one rotated query (the key tile is not used yet)
  for (Eigen::Index i = 0; i < mp; ++i) {
    if (i < m) {
      detail::rotate_to_split(q + i * ldq, hd, rope.table, rope.q_first + i, scale, row);
      for (int c = 0; c < hd; ++c) qT[c * mp + i] = row[c];
    } else {
      for (int c = 0; c < hd; ++c) qT[c * mp + i] = 0.0f;
    }
  }
  auto run = [&](auto kt, const float* kp, Eigen::Index kld, Eigen::Index j0) {
    constexpr int T = decltype(kt)::value;
    for (Eigen::Index p0 = 0; p0 < mp; p0 += panel)
      detail::logits_tile<T, Arch>(qT + p0, mp, kp, kld, hd, sT + j0 * ldt + p0, ldt);
  };
  auto tile = [&](auto kt, Eigen::Index j0) {
    constexpr int T = decltype(kt)::value;
    if (rope.table == nullptr) {
      run(kt, k + j0 * ldk, ldk, j0);
    } else {
      for (int kk = 0; kk < T; ++kk)
        detail::rotate_to_split_simd<Arch>(k + (j0 + kk) * ldk, hd, *rope.table, rope.k_first + j0 + kk,
                                           krot + kk * hd);
      run(kt, krot, hd, j0);
    }
  };
  Eigen::Index j = 0;
  for (; j + KT <= nk; j += KT) tile(std::integral_constant<int, KT>{}, j);
  if (j + 4 <= nk) tile(std::integral_constant<int, 4>{}, j), j += 4;
  if (j + 2 <= nk) tile(std::integral_constant<int, 2>{}, j), j += 2;
  if (j < nk) tile(std::integral_constant<int, 1>{}, j);  // KT <= 8 leaves at most 7 = 4 + 2 + 1
}

// Scalar twin: the same results by direct dot products (llama2.c style). work: 2 * hd floats.
inline void attention_logits_ref(const float* q, Eigen::Index ldq, Eigen::Index m, const float* k, Eigen::Index ldk,
                                 Eigen::Index nk, int hd, float scale, const rope_rows& rope, float* sT,
                                 Eigen::Index ldt, float* work) noexcept {
  float* rq = work;
  float* rk = work + hd;
  for (Eigen::Index i = 0; i < m; ++i) {
    detail::rotate_to_split(q + i * ldq, hd, rope.table, rope.q_first + i, scale, rq);
    for (Eigen::Index j = 0; j < nk; ++j) {
      detail::rotate_to_split(k + j * ldk, hd, rope.table, rope.k_first + j, 1.0f, rk);
      float s = 0.0f;
      for (int c = 0; c < hd; ++c) s += rq[c] * rk[c];
      sT[j * ldt + i] = s;
    }
  }
}

// Causal softmax over the keys of each query lane of transposed logits sT (nk, ldt), in place; query i < m sees
// keys j < visible + i (visible >= 1). Masked entries become 0; inv_sum(i) = 1 / sum of the kept exps, for
// i < padded_queries(m) (padding lanes hold finite values). Sums are formed in float per chunk of keys and
// accumulated in double.
struct causal_softmax {
  template <class Arch>
  void operator()(Arch, float* sT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m, Eigen::Index visible,
                  float* inv_sum) const noexcept;
};

template <class Arch>
void causal_softmax::operator()(Arch, float* sT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m,
                                Eigen::Index visible, float* inv_sum) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index lanes = static_cast<Eigen::Index>(batch::size);
  constexpr Eigen::Index chunk = 256;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  alignas(64) float lane_index[lanes];
  for (Eigen::Index l = 0; l < lanes; ++l) lane_index[l] = static_cast<float>(l);
  const batch iota = batch::load_aligned(lane_index);
  const Eigen::Index mp = padded_queries(m);
  for (Eigen::Index p0 = 0; p0 < mp; p0 += lanes) {
    // keys below visible + p0 are seen by every lane of the panel; beyond, lane l sees key j iff p0 + l > j - visible
    const Eigen::Index full = std::min(nk, visible + p0);
    batch mx(neg_inf);
    for (Eigen::Index j = 0; j < full; ++j) mx = xsimd::max(mx, batch::load_unaligned(sT + j * ldt + p0));
    for (Eigen::Index j = full; j < nk; ++j) {
      const auto seen = iota > batch(static_cast<float>(j - visible - p0));
      mx = xsimd::max(mx, xsimd::select(seen, batch::load_unaligned(sT + j * ldt + p0), batch(neg_inf)));
    }
    double total[lanes] = {};
    alignas(64) float part[lanes];
    for (Eigen::Index c0 = 0; c0 < nk; c0 += chunk) {
      const Eigen::Index c1 = std::min(nk, c0 + chunk);
      batch sum(0.0f);
      for (Eigen::Index j = c0; j < c1; ++j) {
        float* r = sT + j * ldt + p0;
        batch e = xsimd::exp(batch::load_unaligned(r) - mx);
        if (j >= full) e = xsimd::select(iota > batch(static_cast<float>(j - visible - p0)), e, batch(0.0f));
        e.store_unaligned(r);
        sum += e;
      }
      sum.store_aligned(part);
      for (Eigen::Index l = 0; l < lanes; ++l) total[l] += static_cast<double>(part[l]);
    }
    for (Eigen::Index l = 0; l < lanes; ++l) inv_sum[p0 + l] = static_cast<float>(1.0 / total[l]);
  }
}

// Scalar twin (the softmax of the original forward pass): max, exp, double sum, per query i < m.
inline void causal_softmax_ref(float* sT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m, Eigen::Index visible,
                               float* inv_sum) noexcept {
  for (Eigen::Index i = 0; i < m; ++i) {
    const Eigen::Index seen = std::min(nk, visible + i);
    float mx = -std::numeric_limits<float>::infinity();
    for (Eigen::Index j = 0; j < seen; ++j) mx = std::max(mx, sT[j * ldt + i]);
    double sum = 0.0;
    for (Eigen::Index j = 0; j < seen; ++j) {
      sT[j * ldt + i] = std::exp(sT[j * ldt + i] - mx);
      sum += sT[j * ldt + i];
    }
    for (Eigen::Index j = seen; j < nk; ++j) sT[j * ldt + i] = 0.0f;
    inv_sum[i] = static_cast<float>(1.0 / sum);
  }
}

// Size in floats of the workspace of attention_weighted_sum (64-byte aligned start required).
inline constexpr std::size_t attention_weighted_sum_workspace(Eigen::Index m, int hd) noexcept {
  return static_cast<std::size_t>(padded_queries(m) * hd);
}

// out(i, c) = inv_sum(i) * sum_{j < nk} pT(j, i) v(j, c) for i < m, c < hd. pT (nk, ldt) as left by
// causal_softmax; v (nk, hd) stride ldv; out (m, hd) stride ldo. FLOPs: 2 * nk * padded_queries(m) * hd.
struct attention_weighted_sum {
  template <class Arch>
  void operator()(Arch, const float* pT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m, const float* v,
                  Eigen::Index ldv, int hd, const float* inv_sum, float* out, Eigen::Index ldo,
                  float* work) const noexcept;
};

namespace detail {

// Register tile of the weighted sum: CT channels x 2 batches of queries, over keys [j0, j1).
template <int CT, class Arch>
inline void weighted_sum_tile(const float* pT, Eigen::Index ldt, Eigen::Index j0, Eigen::Index j1, const float* v,
                              Eigen::Index ldv, float* oT, Eigen::Index ldo, bool first) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index lanes = static_cast<Eigen::Index>(batch::size);
  batch acc0[CT], acc1[CT];
  for (int cc = 0; cc < CT; ++cc) {
    acc0[cc] = first ? batch(0.0f) : batch::load_aligned(oT + cc * ldo);
    acc1[cc] = first ? batch(0.0f) : batch::load_aligned(oT + cc * ldo + lanes);
  }
  for (Eigen::Index j = j0; j < j1; ++j) {
    const batch a0 = batch::load_unaligned(pT + j * ldt), a1 = batch::load_unaligned(pT + j * ldt + lanes);
    const float* vj = v + j * ldv;
    for (int cc = 0; cc < CT; ++cc) {
      const batch b(vj[cc]);
      acc0[cc] = xsimd::fma(a0, b, acc0[cc]);
      acc1[cc] = xsimd::fma(a1, b, acc1[cc]);
    }
  }
  for (int cc = 0; cc < CT; ++cc) {
    acc0[cc].store_aligned(oT + cc * ldo);
    acc1[cc].store_aligned(oT + cc * ldo + lanes);
  }
}

}  // namespace detail

template <class Arch>
void attention_weighted_sum::operator()(Arch, const float* pT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m,
                                        const float* v, Eigen::Index ldv, int hd, const float* inv_sum, float* out,
                                        Eigen::Index ldo, float* work) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index panel = 2 * static_cast<Eigen::Index>(batch::size);
  constexpr int CT = detail::channel_tile<Arch>();
  constexpr Eigen::Index chunk = 256;  // keys per pass: a chunk of pT stays in L2 across the channel tiles
  const Eigen::Index mp = padded_queries(m);
  float* oT = work;  // oT(c, i)
  if (nk == 0) {
    for (int c = 0; c < hd; ++c)
      for (Eigen::Index i = 0; i < mp; ++i) oT[c * mp + i] = 0.0f;
  }
  for (Eigen::Index j0 = 0; j0 < nk; j0 += chunk) {
    const Eigen::Index j1 = std::min(nk, j0 + chunk);
    const bool first = j0 == 0;
    for (Eigen::Index p0 = 0; p0 < mp; p0 += panel) {
      int c = 0;
      for (; c + CT <= hd; c += CT)
        detail::weighted_sum_tile<CT, Arch>(pT + p0, ldt, j0, j1, v + c, ldv, oT + c * mp + p0, mp, first);
      for (; c + 2 <= hd; c += 2)
        detail::weighted_sum_tile<2, Arch>(pT + p0, ldt, j0, j1, v + c, ldv, oT + c * mp + p0, mp, first);
      for (; c < hd; ++c)
        detail::weighted_sum_tile<1, Arch>(pT + p0, ldt, j0, j1, v + c, ldv, oT + c * mp + p0, mp, first);
    }
  }
  for (Eigen::Index i = 0; i < m; ++i)
    for (int c = 0; c < hd; ++c) out[i * ldo + c] = oT[c * mp + i] * inv_sum[i];
}

// Scalar twin.
inline void attention_weighted_sum_ref(const float* pT, Eigen::Index ldt, Eigen::Index nk, Eigen::Index m,
                                       const float* v, Eigen::Index ldv, int hd, const float* inv_sum, float* out,
                                       Eigen::Index ldo) noexcept {
  for (Eigen::Index i = 0; i < m; ++i)
    for (int c = 0; c < hd; ++c) {
      float s = 0.0f;
      for (Eigen::Index j = 0; j < nk; ++j) s += pT[j * ldt + i] * v[j * ldv + c];
      out[i * ldo + c] = s * inv_sum[i];
    }
}

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
