// llamacpp_quantize: llama.cpp's own quantizer (llama_model_quantize, as llama-quantize runs it without an
// importance matrix) on a GGUF. --type is a llama.cpp file type (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K,
// q3_K_S/M/L, q4_K_S/M, q5_K_S/M, q6_K); f32 from a quantized input is llama.cpp's own dequantization.
//
//   llamacpp_quantize --lib DIR --in in.gguf --out out.gguf --type q4_K_M [--pure] [--threads T]
//
// --lib defaults to $QROAR_LLAMACPP_DIR. Prints llama.cpp's warnings; exit 0 on success, 1 on failure, 2 on usage.
#include <iostream>
#include <map>

#include "llamacpp.hpp"

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  if (const char* env = std::getenv("QROAR_LLAMACPP_DIR")) a["--lib"] = env;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--pure") {
      a[k] = "1";
    } else if (k.rfind("--", 0) == 0 && i + 1 < argc) {
      a[k] = argv[++i];
    } else {
      std::cerr << "llamacpp_quantize: unexpected argument '" << k << "'\n";
      return 2;
    }
  }
  for (const char* req : {"--lib", "--in", "--out", "--type"})
    if (!a.count(req)) {
      std::cerr << "llamacpp_quantize: " << req << " is required\n";
      return 2;
    }
  try {
    auto& lib = llamacpp::library::open(a["--lib"]);
    llamacpp::quantize_options o;
    o.type = a["--type"];
    o.pure = a.count("--pure") > 0;
    o.allow_requantize = true;
    if (a.count("--threads")) o.threads = std::stoi(a["--threads"]);
    for (const auto& w : llamacpp::quantize(lib, a["--in"], a["--out"], o)) std::cerr << "llama.cpp: " << w << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "llamacpp_quantize: " << e.what() << "\n";
    return 1;
  }
}
