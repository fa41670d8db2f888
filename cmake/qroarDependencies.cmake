# Dependencies come from the system (Debian: libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev, and for tests,
# examples and benchmarks doctest-dev libcli11-dev libfmt-dev libbenchmark-dev libsentencepiece-dev; for the optional
# tokenizer.json / GGUF BPE tokenizers libpcre2-dev libutf8proc-dev, found with pkg-config in CMakeLists.txt as
# qroar::hf_tokenizer; node and npm (Node.js 20) for their reference test).
# Only when a package is missing and QROAR_ALLOW_DOWNLOADS is ON do we fall back to FetchContent at pinned tags.
include(FetchContent)

macro(qroar_require_package name fetch_name url tag)
  find_package(${name} ${ARGN} QUIET)
  if(NOT ${name}_FOUND)
    if(QROAR_ALLOW_DOWNLOADS)
      message(STATUS "qroar: ${name} not found, fetching ${url} @ ${tag}")
      FetchContent_Declare(${fetch_name} GIT_REPOSITORY ${url} GIT_TAG ${tag} GIT_SHALLOW TRUE)
      FetchContent_MakeAvailable(${fetch_name})
    else()
      message(FATAL_ERROR "qroar: ${name} not found. Install it (on Debian: sudo sh cmake/setup-debian.sh) "
                          "or configure with -DQROAR_ALLOW_DOWNLOADS=ON.")
    endif()
  endif()
endmacro()

qroar_require_package(Eigen3 eigen https://gitlab.com/libeigen/eigen.git 3.4.0 3.4 NO_MODULE)
# Debian builds xsimd with xtl support: its target links `xtl`, so find xtl first when it is there.
find_package(xtl QUIET)
qroar_require_package(xsimd xsimd https://github.com/xtensor-stack/xsimd.git 8.1.0)
qroar_require_package(nlohmann_json nlohmann_json https://github.com/nlohmann/json.git v3.11.2 3.11)
