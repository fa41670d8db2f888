// The analytic equivariance answer agrees with the empirical probe for every kind of spec the library supports.
#include <doctest/doctest.h>

#include <qroar/io/llama2c.hpp>
#include <qroar/io/tokenizer.hpp>
#include <qroar/quant/equivariance.hpp>

#include "shared_data.hpp"

TEST_CASE("is_row_scale_equivariant agrees with the probe over all supported specs" * doctest::test_suite("slow")) {
  const auto path = qroar_test::shared_file("data/models/gutenberg-3m/model.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  const auto ids = qroar::read_token_ids(qroar_test::shared_file("reference/windows/g3m_frankenstein_16k.txt").string());
  const std::vector<int> tokens(ids.begin(), ids.begin() + 128);
  const auto dims = model.config.rope_geometry();
  const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), dims);
  const std::vector<std::string> specs = {
      "rtn:w4:g32:sym", "rtn:w3:g32:asym", "rtn:w8:channel:asym", "rtn:w4:channel:sym:fp16", "rtn:w4:g64:clip",
      "rtn:w4:tensor", "rtn:w2:tensor:asym", "gptq:w4:g128", "gptq:w3:channel:act-order", "ggml:q8_0", "ggml:q4_0",
      "ggml:q4_1", "ggml:q5_0", "ggml:q5_1", "ggml:q4_K", "ggml:q5_K", "ggml:q6_K",
      "kv:k4:token:g64:post-rope", "kv:k4v4:token:g32:post-rope", "kv:k4:token:g16:pre-rope", "kv:k4:token:g8:post-rope",
      "kv:k2v2:channel:g32:asym", "kv:k4:channel:g64:pre-rope", "kv:v4:token:g32", "act:q8k8:token:g64",
      "act:k4:token:g16:pre-rope", "rtn:w4:g32:sym+kv:k4:token:g64:post-rope", "ggml:q4_0+kv:k4:channel:g32"};
  for (const char* band_spec : {"equal:4", "equal:1", "by-wavelength", "equal:32"}) {
    const auto bands = qroar::bands_from_spec(band_spec, inv, model.config.original_ctx);
    for (const auto& s : specs) {
      const std::string context = s + " with bands " + band_spec;
      CAPTURE(context);
      const auto spec = qroar::parse_quant_spec(s);
      const auto analytic = qroar::is_row_scale_equivariant(spec, bands, dims);
      const auto probe = qroar::probe_row_scale_equivariance(model, spec, bands, tokens);
      CAPTURE(probe.weights_change);
      CAPTURE(probe.kv_change);
      CHECK(analytic.weights == probe.weights_equivariant());
      CHECK((analytic.kv && analytic.activations) == probe.kv_equivariant());
      CHECK(!analytic.summary().empty());
      if (std::string(band_spec) == "equal:4" && spec.quantizes_weights())
        MESSAGE(s << ": structural change " << probe.weights_change << ", fp16 residual at the model's scale "
                  << probe.weights_fp16_residual);
    }
  }
}

TEST_CASE("band alignment of per-token groups follows the pair layout") {
  const qroar::rope_dims inter{64, 0, 10000.0, qroar::pair_layout::interleaved};
  const qroar::rope_dims half{64, 0, 10000.0, qroar::pair_layout::half_split};
  const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), inter);
  const auto bands = qroar::bands_equal(2, inv, 256);  // pairs 0-15 and 16-31
  const auto spec = qroar::parse_quant_spec("kv:k4:token:g32:post-rope");
  // interleaved: channels 0-31 are pairs 0-15 (one band); half-split: channels 0-31 hold x of all 32 pairs
  CHECK(qroar::is_row_scale_equivariant(spec, bands, inter).kv);
  CHECK_FALSE(qroar::is_row_scale_equivariant(spec, bands, half).kv);
  CHECK(qroar::is_row_scale_equivariant(qroar::parse_quant_spec("rtn:w4:g32"), bands, half).symmetric_is_noop());
}
