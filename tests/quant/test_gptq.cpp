// GPTQ: on the calibration data its layer-output error is never worse than RTN's on the same grid, for every
// linear weight of the real models; the matrix routine is exact where the answer is known.
#include <doctest/doctest.h>

#include <random>

#include <qroar/io/llama2c.hpp>
#include <qroar/io/tokenizer.hpp>
#include <qroar/quant/gptq.hpp>

#include "shared_data.hpp"

namespace {

std::vector<std::vector<int>> calibration_windows(const std::string& path, int n_windows, int len) {
  const auto ids = qroar::read_token_ids(path);
  std::vector<std::vector<int>> out;
  for (int w = 0; w < n_windows; ++w)
    out.emplace_back(ids.begin() + static_cast<long>(w) * len, ids.begin() + static_cast<long>(w + 1) * len);
  return out;
}

}  // namespace

TEST_CASE("GPTQ with an identity Hessian equals RTN (no error to propagate between uncorrelated inputs)") {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  qroar::tensor w(16, 64);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = d(rng);
  auto spec = qroar::parse_quant_spec("gptq:w4:g32").weights;
  spec.damp = 1e-9;
  qroar::tensor g = w, r = w;
  REQUIRE(qroar::gptq_quantize_matrix(g, Eigen::MatrixXd::Identity(64, 64), spec));
  qroar::rtn_quantize(r, spec);
  CHECK((g - r).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("GPTQ never loses to RTN on the calibration data, every layer of stories260K and gutenberg-3m") {
  struct item { const char* model; const char* spec; };
  for (const auto& it : {item{"data/models/stories260K/stories260K.bin", "gptq:w4:g32"},
                         item{"data/models/stories260K/stories260K.bin", "gptq:w3:channel:act-order"},
                         item{"data/models/gutenberg-3m/model.bin", "gptq:w4:g64:asym"}}) {
    const std::string model_name = it.model, spec_text = it.spec;
    CAPTURE(model_name);
    CAPTURE(spec_text);
    const auto path = qroar_test::shared_file(it.model);
    if (path.empty()) return;
    auto model = qroar::load_llama2c(path.string());
    const auto windows = std::string(it.model).find("stories") != std::string::npos
                             ? calibration_windows(qroar_test::shared_file("reference/windows/s260_eval_12288.txt").string(), 2, 512)
                             : calibration_windows(qroar_test::shared_file("reference/windows/g3m_frankenstein_16k.txt").string(), 2, 256);
    const auto spec = qroar::parse_quant_spec(it.spec).weights;
    const auto report = qroar::gptq_quantize_model(model, windows, spec);
    CHECK(report.size() == static_cast<std::size_t>(7 * model.config.n_layers));
    double gptq = 0, rtn = 0;
    for (const auto& r : report) {
      CAPTURE(r.layer);
      CAPTURE(r.weight);
      CHECK(r.cholesky_ok);
      CHECK(r.gptq_error <= r.rtn_error);
      gptq += r.gptq_error;
      rtn += r.rtn_error;
    }
    MESSAGE(model_name << " " << spec_text << ": total layer-output error GPTQ " << gptq << " vs RTN " << rtn);
    CHECK(gptq < 0.9 * rtn);
  }
}
