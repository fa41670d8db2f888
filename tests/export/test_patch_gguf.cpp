#include <doctest/doctest.h>

#include <qroar/io/gguf_model.hpp>
#include <qroar/search/band_scales.hpp>
#include <qroar/search/patch_gguf.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "export_testing.hpp"
#include "shared_data.hpp"

using qroar_export_test::read_bytes;
using qroar_export_test::same_bits;
using qroar_export_test::temp_dir;

namespace {

using qroar_test::paths::stories_gguf;
const char* const stories_q8 = "data/models/stories260K/ggml-quantized/stories260K-q8_0.gguf";

// Every quantized GGUF of ../shared.
std::vector<std::filesystem::path> quantized_files() {
  std::vector<std::filesystem::path> out;
  for (const char* model : {"stories260K", "gutenberg-3m"}) {
    const auto dir = qroar_test::shared_file(std::string("data/models/") + model + "/ggml-quantized");
    if (dir.empty()) return {};
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".gguf") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The fp16 scales of one block, read from the byte layout of docs/formulas.md §3.1 (not from the code under test), each with
// the largest factor it can be multiplied by in a dequantized value: |q| for Q8_0 (int8, 128), Q4_0 (8), Q5_0 (16);
// q and 1 for Q4_1 (15, 1) / Q5_1 (31, 1); sc_k * q and m_k for Q4_K (63 * 15, 63) / Q5_K (63 * 31, 63);
// |sc_k| * |q - 32| for Q6_K (128 * 32).
struct scale_field {
  std::size_t offset;
  double multiplier;
};
struct block_layout {
  std::size_t block_size, type_size;
  std::vector<scale_field> scales;
};
block_layout layout_of(qroar::ggml_type t) {
  using T = qroar::ggml_type;
  switch (t) {
    case T::q8_0: return {32, 34, {{0, 128}}};
    case T::q4_0: return {32, 18, {{0, 8}}};
    case T::q4_1: return {32, 20, {{0, 15}, {2, 1}}};
    case T::q5_0: return {32, 22, {{0, 16}}};
    case T::q5_1: return {32, 24, {{0, 31}, {2, 1}}};
    case T::q4_k: return {256, 144, {{0, 63.0 * 15}, {2, 63}}};
    case T::q5_k: return {256, 176, {{0, 63.0 * 31}, {2, 63}}};
    case T::q6_k: return {256, 210, {{208, 128.0 * 32}}};
    default: FAIL("not a block type: " << qroar::to_string(t)); return {};
  }
}
float fp16_at(const std::uint8_t* p) {
  return qroar::detail::fp16_to_fp32(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
}

// Float arithmetic slack: dequantization takes at most 3 roundings per element (d*sc, *q, - dmin*m) and the reference
// g*x one more; each is at most 2^-24 of the magnitude bound below.
constexpr double dequant_float_slack = 8 * 0x1p-24;

// The largest |patched - g * original| allowed for any element of a block whose stored scales were s_k (before
// patching): each scale contributes its fp16 rounding error (patch_gguf_scale_tolerance relative to |g s_k| in the
// normal range, patch_gguf_subnormal_tolerance absolute below 2^-14) times its multiplier.
double block_tolerance(const block_layout& L, const std::uint8_t* original, float g) {
  double tol = 0.0;
  for (const auto& f : L.scales) {
    const double gs = std::fabs(static_cast<double>(g) * fp16_at(original + f.offset));
    const double rounding = gs >= 0x1p-14 ? qroar::patch_gguf_scale_tolerance * gs
                                          : qroar::patch_gguf_subnormal_tolerance + 0x1p-24 * gs;
    tol += (rounding + dequant_float_slack * gs) * f.multiplier;
  }
  return tol;
}

// The factor of row r of layer l's W_Q (query = true) or W_K, by docs/formulas.md §1.5 for interleaved GGUF rows:
// row = head * hd + 2j + t; a query head h uses its KV head h / n_rep; channels >= rotary_dim are not scaled.
float expected_factor(const qroar::band_scales& s, const qroar::llama_config& c, int layer, bool query, int row) {
  const int hd = c.head_size(), d = c.rope_geometry().rotary();
  const int head = row / hd, channel = row % hd;
  if (channel >= d) return 1.0f;
  const int band = s.bands.band_of(channel / 2);
  const int kv_head = query ? head / (c.n_heads / c.n_kv_heads) : head;
  return static_cast<float>(query ? s.query_factor(layer, kv_head, band) : s.key_factor(layer, kv_head, band));
}

qroar::band_scales random_scales(const qroar::llama_config& c, qroar::scale_variant v, unsigned seed,
                                 const std::vector<double>& choices = {}) {
  const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), c.rope_geometry());
  const int n_bands = std::min<int>(4, static_cast<int>(inv.size()));
  qroar::band_scales s(qroar::bands_equal(n_bands, inv, c.original_ctx), v, qroar::scale_granularity::per_layer_kv_head,
                       c.n_layers, c.n_kv_heads);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int unit = 0; unit < s.units(); ++unit)
    for (int b = 0; b < static_cast<int>(s.bands.size()); ++b) {
      if (choices.empty()) {
        s.set(unit, b, std::exp2(u(rng)), std::exp2(u(rng)));
      } else {
        s.set(unit, b, choices[rng() % choices.size()], choices[rng() % choices.size()]);
      }
    }
  return s;
}

bool is_qk(const std::string& name) {
  return name.find(".attn_q.weight") != std::string::npos || name.find(".attn_k.weight") != std::string::npos;
}

}  // namespace

TEST_CASE("patch_gguf_band_scales: every quantized GGUF of ../shared dequantizes to g x the original within fp16 "
          "rounding of the new scales, codes and all other bytes unchanged") {
  const auto files = quantized_files();
  if (files.empty()) return;
  CHECK(files.size() == 10);
  for (const auto& path : files) {
    CAPTURE(path.string());
    const auto in = qroar::gguf_file::open(path.string());
    const auto c = qroar::llama_config_from_gguf(in);
    const auto s = random_scales(c, qroar::scale_variant::symmetric, 7);
    temp_dir dir;
    const auto out_path = dir.file("patched.gguf");
    const auto report = qroar::patch_gguf_band_scales(in, s, out_path);
    CHECK(report.tensors == 2 * c.n_layers);
    CHECK(report.max_scale_rounding <= qroar::patch_gguf_scale_tolerance);
    const auto out = qroar::gguf_file::open(out_path);
    // Same layout: header and metadata bytes identical, same size, same tensor offsets.
    REQUIRE(out.file_size() == in.file_size());
    auto a = read_bytes(path.string());
    const auto b = read_bytes(out_path);
    // general.file_type describes the tensors: the gutenberg-3m files say 0 ("all F32", kept from the F32 source
    // by ggml's quantizer) and are corrected in place (same key, same u32 width); stories260K's have none.
    const auto type_key = std::string("general.file_type");
    const auto key_at = std::search(a.begin(), a.begin() + static_cast<long>(in.data_offset()), type_key.begin(), type_key.end());
    if (key_at != a.begin() + static_cast<long>(in.data_offset())) {
      const auto main = qroar::detail::gguf_export::main_type_of_file_type(
          static_cast<std::uint32_t>(out.get_int("general.file_type", -1)));
      REQUIRE(main.has_value());
      CHECK(*main == in.tensor("blk.0.attn_q.weight")->type);
      const auto value_at = (key_at - a.begin()) + static_cast<long>(type_key.size()) + 4;  // after the u32 type tag
      std::copy(b.begin() + value_at, b.begin() + value_at + 4, a.begin() + value_at);
    }
    CHECK(std::equal(a.begin(), a.begin() + static_cast<long>(in.data_offset()), b.begin()));
    std::size_t blocks = 0, exact_blocks = 0;
    double worst = 0.0;  // max over blocks of |error| / tolerance
    for (const auto& ti : in.tensors()) {
      CAPTURE(ti.name);
      const auto* to = out.tensor(ti.name);
      REQUIRE(to != nullptr);
      REQUIRE(to->type == ti.type);
      const std::uint8_t* p0 = in.tensor_data(ti);
      const std::uint8_t* p1 = out.tensor_data(*to);
      if (!is_qk(ti.name)) {
        CHECK(std::equal(p0, p0 + ti.size, p1));
        continue;
      }
      const bool query = ti.name.find("attn_q") != std::string::npos;
      const int layer = std::stoi(ti.name.substr(4));
      const auto L = layout_of(ti.type);
      const auto original = in.dequantize(ti), patched = out.dequantize(*to);
      const std::uint64_t row_bytes = ti.row_size();
      for (std::int64_t r = 0; r < ti.n_rows(); ++r) {
        const float g = expected_factor(s, c, layer, query, static_cast<int>(r));
        for (std::int64_t blk = 0; blk < ti.ne[0] / static_cast<std::int64_t>(L.block_size); ++blk) {
          const std::uint8_t* b0 = p0 + static_cast<std::uint64_t>(r) * row_bytes + static_cast<std::size_t>(blk) * L.type_size;
          const std::uint8_t* b1 = p1 + static_cast<std::uint64_t>(r) * row_bytes + static_cast<std::size_t>(blk) * L.type_size;
          // Codes and sub-block scales: every byte outside the fp16 scales is unchanged.
          for (std::size_t k = 0; k < L.type_size; ++k) {
            bool is_scale = false;
            for (const auto& f : L.scales) is_scale = is_scale || k == f.offset || k == f.offset + 1;
            if (!is_scale && b0[k] != b1[k]) FAIL_CHECK("code byte " << k << " changed in row " << r << " block " << blk);
          }
          const double tol = block_tolerance(L, b0, g);
          double err = 0.0;
          for (std::size_t i = 0; i < L.block_size; ++i) {
            const auto col = static_cast<Eigen::Index>(static_cast<std::size_t>(blk) * L.block_size + i);
            err = std::max(err, std::fabs(static_cast<double>(patched(r, col)) - static_cast<double>(g * original(r, col))));
          }
          ++blocks;
          if (err == 0.0) ++exact_blocks;
          if (tol > 0.0) worst = std::max(worst, err / tol);
          if (!(err <= tol)) FAIL_CHECK("row " << r << " block " << blk << ": error " << err << " > tolerance " << tol);
        }
      }
    }
    MESSAGE(path.filename().string() << ": " << blocks << " blocks, " << exact_blocks << " exact, worst error / tolerance "
                                     << worst << ", " << report.subnormal_scales << " subnormal scales");
  }
}

TEST_CASE("patch_gguf_band_scales: factors 2^k are bit exact (scales and dequantized values)") {
  const auto files = quantized_files();
  if (files.empty()) return;
  for (const auto& path : files) {
    CAPTURE(path.string());
    const auto in = qroar::gguf_file::open(path.string());
    const auto c = qroar::llama_config_from_gguf(in);
    const auto s = random_scales(c, qroar::scale_variant::independent, 11, {0.25, 0.5, 2.0, 4.0, 8.0});
    temp_dir dir;
    const auto report = qroar::patch_gguf_band_scales(in, s, dir.file("p.gguf"));
    const auto out = qroar::gguf_file::open(dir.file("p.gguf"));
    std::size_t checked = 0, skipped = 0;
    for (const auto& ti : in.tensors()) {
      if (!is_qk(ti.name)) continue;
      CAPTURE(ti.name);
      const bool query = ti.name.find("attn_q") != std::string::npos;
      const int layer = std::stoi(ti.name.substr(4));
      const auto L = layout_of(ti.type);
      const auto original = in.dequantize(ti), patched = out.dequantize(*out.tensor(ti.name));
      for (std::int64_t r = 0; r < ti.n_rows(); ++r) {
        const float g = expected_factor(s, c, layer, query, static_cast<int>(r));
        for (std::int64_t blk = 0; blk < ti.ne[0] / static_cast<std::int64_t>(L.block_size); ++blk) {
          const std::size_t at = static_cast<std::size_t>(r) * ti.row_size() + static_cast<std::size_t>(blk) * L.type_size;
          // 2^k * s is an fp16 value when s and 2^k * s are both normal (or zero), and when a subnormal s is scaled
          // up; it loses low bits only when a scale is or becomes subnormal on the way down.
          bool representable = true;
          for (const auto& f : L.scales) {
            const float s0 = fp16_at(in.tensor_data(ti) + at + f.offset);
            const float s1 = fp16_at(out.tensor_data(*out.tensor(ti.name)) + at + f.offset);
            const bool normal = (s0 == 0.0f || std::fabs(s0) >= 0x1p-14f) && (s1 == 0.0f || std::fabs(s1) >= 0x1p-14f);
            if (normal || g >= 1.0f) CHECK(s1 == g * s0);
            representable = representable && s1 == g * s0;
          }
          if (!representable) {
            ++skipped;
            continue;
          }
          ++checked;
          for (std::size_t i = 0; i < L.block_size; ++i) {
            const auto col = static_cast<Eigen::Index>(static_cast<std::size_t>(blk) * L.block_size + i);
            const float want = g * original(r, col);
            if (std::memcmp(&want, &patched(r, col), 4) != 0)
              FAIL_CHECK("row " << r << " col " << col << ": " << patched(r, col) << " != " << want);
          }
        }
      }
    }
    MESSAGE(path.filename().string() << ": " << checked << " blocks bit exact, " << skipped
                                     << " skipped (a subnormal scale halved; report: " << report.subnormal_scales
                                     << " scales became subnormal)");
    CHECK(checked > 0);
  }
}

TEST_CASE("patch_gguf_band_scales: an f32 GGUF patched equals apply_band_scales on the float model, bit for bit") {
  const auto path = qroar_test::shared_file(stories_gguf);
  if (path.empty()) return;
  auto m = qroar::load_gguf_model(path.string());
  const auto s = random_scales(m.config, qroar::scale_variant::symmetric, 3);
  temp_dir dir;
  const auto report = qroar::patch_gguf_band_scales(path.string(), s, dir.file("p.gguf"));
  CHECK(report.values > 0);
  CHECK(report.scales == 0);
  qroar::apply_band_scales(m, s);
  const auto patched = qroar::load_gguf_model(dir.file("p.gguf"));
  qroar_export_test::check_same_weights(patched, m);
}

TEST_CASE("patch_gguf_band_scales: range policy and refusals") {
  const auto path = qroar_test::shared_file(stories_q8);
  if (path.empty()) return;
  temp_dir dir;
  const auto copy = dir.file("in.gguf");
  std::filesystem::copy_file(path, copy);
  const auto before = read_bytes(copy);
  const auto c = qroar::llama_config_from_gguf(qroar::gguf_file::open(copy));
  auto uniform = [&](double q) {
    const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), c.rope_geometry());
    qroar::band_scales s(qroar::bands_equal(2, inv, c.original_ctx), qroar::scale_variant::query_only,
                         qroar::scale_granularity::global, c.n_layers, c.n_kv_heads);
    s.set(0, 1, q);
    return s;
  };
  const auto out = dir.file("out.gguf");
  auto refused = [&](const qroar::band_scales& s, const char* what, const qroar::gguf_patch_options& o = {}) {
    try {
      qroar::patch_gguf_band_scales(copy, s, out, o);
      FAIL("no exception");
    } catch (const qroar::numeric_error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find("blk.0.attn_q.weight") != std::string::npos);
      CHECK(msg.find("row ") != std::string::npos);
      CHECK(msg.find("block ") != std::string::npos);
      CHECK(msg.find(what) != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(out));  // nothing written, not even a partial file
    CHECK(read_bytes(copy) == before);
  };
  SUBCASE("fp16 overflow") { refused(uniform(1e7), "65504"); }
  SUBCASE("underflow to zero") { refused(uniform(1e-9), "underflows"); }
  SUBCASE("subnormal: warned by default, refused on request") {
    qroar::gguf_patch_options strict;
    strict.refuse_subnormal = true;
    refused(uniform(0x1p-8), "subnormal", strict);
    const auto report = qroar::patch_gguf_band_scales(copy, uniform(0x1p-8), out);
    CHECK(report.subnormal_scales > 0);
    CHECK_FALSE(report.warnings.empty());
    CHECK(std::filesystem::exists(out));
  }
  SUBCASE("in place, under any spelling of the path") {
    CHECK_THROWS_AS(qroar::patch_gguf_band_scales(copy, uniform(2.0), copy), qroar::invalid_argument);
    const auto dotted = (std::filesystem::path(copy).parent_path() / "." / "in.gguf").string();
    CHECK_THROWS_AS(qroar::patch_gguf_band_scales(copy, uniform(2.0), dotted), qroar::invalid_argument);
    CHECK(read_bytes(copy) == before);
  }
  SUBCASE("scales for another model shape") {
    qroar::llama_config other = c;
    other.n_layers = c.n_layers + 1;
    const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), other.rope_geometry());
    const qroar::band_scales s(qroar::bands_equal(2, inv, c.original_ctx), qroar::scale_variant::symmetric,
                               qroar::scale_granularity::per_layer, other.n_layers, other.n_kv_heads);
    CHECK_THROWS_AS(qroar::patch_gguf_band_scales(copy, s, out), qroar::invalid_argument);
  }
  SUBCASE("identity scales copy the file byte for byte; a recorded scaling rewrites only rope keys") {
    const auto report = qroar::patch_gguf_band_scales(copy, uniform(1.0), out);
    CHECK(report.tensors == 0);
    CHECK(read_bytes(out) == before);
    qroar::gguf_patch_options o;
    o.record_scaling = qroar::rope_scaling::linear(4.0);
    o.original_ctx = 512;
    qroar::patch_gguf_band_scales(copy, uniform(2.0), dir.file("r.gguf"), o);
    const auto m = qroar::load_gguf_model(dir.file("r.gguf"));
    CHECK(m.config.rope.type == qroar::rope_type::linear);
    CHECK(m.config.rope.factor == 4.0);
    CHECK(m.config.original_ctx == 512);
  }
}
