// qroar rope: inverse frequencies, attention factor and frequency bands of a RoPE scaling.
#include "cli_common.hpp"

#include <cmath>
#include <iostream>

namespace {

struct rope_command_options {
  qroar_cli::rope_options rope;
  int head_dim = 0;
  int rotary_dim = 0;
  double theta = 10000.0;
  int original_ctx = 0;
  std::string bands = "by-wavelength";
  bool json = false;
};

int run_rope(const rope_command_options& o) {
  // --type defaults to `default` here (no model file to read a scaling from); --beta-fast / --beta-slow also set
  // the --bands by-wavelength edges
  o.rope.check_parameters(false, /*needs_type=*/false,
                          o.bands == "by-wavelength" ? std::vector<std::string>{"--beta-fast", "--beta-slow"}
                                                     : std::vector<std::string>{});
  const qroar::rope_dims dims{o.head_dim, o.rotary_dim, o.theta, qroar::pair_layout::interleaved};
  dims.validate();
  const auto sc = o.rope.to_scaling(o.original_ctx);
  const auto inv = qroar::inverse_frequencies(sc, dims, o.rope.seq_len);
  const double a = qroar::attention_factor(sc, dims, o.rope.seq_len);
  // Bands are defined on the model's original frequencies theta_j (a property of the model, not of the
  // scaling); the effective wavelengths under the scaling are reported beside them.
  const auto original = qroar::inverse_frequencies(qroar::rope_scaling::none(), dims);
  const int band_ctx = o.original_ctx > 0 ? o.original_ctx : 0;
  if (o.bands == "by-wavelength" && band_ctx <= 0)
    throw qroar_cli::usage_error("--bands by-wavelength needs --original-ctx");
  const auto bands = qroar::bands_from_spec(o.bands, original, band_ctx, o.rope.beta_fast, o.rope.beta_slow);
  const double two_pi = 6.283185307179586476925;
  if (o.json) {
    nlohmann::ordered_json j;
    j["inv_freq"] = inv;
    j["attention_factor"] = a;
    j["type"] = qroar::to_string(sc.type);
    nlohmann::ordered_json jb = nlohmann::ordered_json::array();
    for (const auto& b : bands.bands) {
      jb.push_back({{"first_pair", b.first_pair},
                    {"last_pair", b.last_pair},
                    {"min_wavelength", b.min_wavelength},
                    {"max_wavelength", b.max_wavelength},
                    {"min_rotations", b.min_rotations},
                    {"max_rotations", b.max_rotations},
                    {"min_effective_wavelength", two_pi / inv[static_cast<std::size_t>(b.first_pair)]},
                    {"max_effective_wavelength", two_pi / inv[static_cast<std::size_t>(b.last_pair)]},
                    {"name", b.name}});
    }
    j["bands"] = jb;
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("RoPE {}: head_dim {}, rotary_dim {}, theta {}, factor {}, original ctx {}\n", qroar::to_string(sc.type),
             dims.head_dim, dims.rotary(), dims.base, sc.factor, o.original_ctx);
  fmt::print("attention factor {:.9g} (logits x {:.9g})\n\n", a, a * a);
  fmt::print("{:>5} {:>14} {:>14} {:>12} {:>12} {:>6}\n", "pair", "theta_j", "theta'_j", "wavelength", "rotations",
             "band");
  for (int jx = 0; jx < dims.pairs(); ++jx) {
    const auto u = static_cast<std::size_t>(jx);
    const double lam = two_pi / inv[u];
    fmt::print("{:>5} {:>14.6e} {:>14.6e} {:>12.5g} {:>12.5g} {:>6}\n", jx, original[u], inv[u], lam,
               o.original_ctx > 0 ? o.original_ctx * original[u] / two_pi : 0.0, bands.band_of(jx));
  }
  fmt::print("\n{:>5} {:>12} {:>6} {:>6} {:>14} {:>14}\n", "band", "name", "first", "last", "min wavelength",
             "max wavelength");
  for (std::size_t b = 0; b < bands.size(); ++b)
    fmt::print("{:>5} {:>12} {:>6} {:>6} {:>14.5g} {:>14.5g}\n", b, bands[b].name, bands[b].first_pair,
               bands[b].last_pair, bands[b].min_wavelength, bands[b].max_wavelength);
  return 0;
}

const qroar_cli::registrar register_rope{{"rope", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<rope_command_options>();
  app.description("Inverse frequencies, attention factor and frequency bands of a RoPE scaling");
  app.footer(
      "Examples:\n"
      "  qroar rope --type yarn --head-dim 64 --theta 10000 --original-ctx 256 --factor 4\n"
      "  qroar rope --type llama3 --head-dim 128 --theta 500000 --original-ctx 8192 --factor 8 --json\n"
      "  qroar rope --type dynamic --head-dim 64 --original-ctx 256 --factor 4 --seq-len 1024 --bands equal:4");
  o->rope.add_to(app);
  app.add_option("--head-dim", o->head_dim, "channels per attention head")->required()->check(CLI::PositiveNumber);
  app.add_option("--rotary-dim", o->rotary_dim, "rotated channels (partial rotary; default head_dim)")
      ->check(CLI::PositiveNumber);
  app.add_option("--theta,--base", o->theta, "RoPE base")->check(qroar_cli::finite_positive);
  app.add_option("--original-ctx", o->original_ctx, "context the model was trained at (L0)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seq-len", o->rope.seq_len, "current sequence length (dynamic, longrope)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bands", o->bands, "band partition: by-wavelength, equal:N or edges:a,b,...");
  app.add_flag("--json", o->json, "print one JSON object");
  run = [o] { return run_rope(*o); };
}}};

}  // namespace
