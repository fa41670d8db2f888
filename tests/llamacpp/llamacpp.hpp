// llama.cpp as an independent client of the GGUF files qroar writes.
//
// The library comes from the npm package @node-llama-cpp/linux-x64 (a CPU build of llama.cpp's C library,
// libllama + libggml with one CPU backend per instruction-set level), fetched at test time into the build folder
// (fetch_llamacpp.cmake). The package ships no header, so the few functions used here are declared below and
// resolved with dlopen/dlsym; nothing links against it at build time.
//
// Parameter structs: llama.cpp's llama_model_params / llama_context_params / llama_model_quantize_params change
// between versions. They are handled as opaque byte blocks filled by the library's own *_default_params()
// functions; this file edits only the fields named in `param_layout`, at offsets checked at start-up: every
// field of the table must hold its documented default value, else `library::open` throws and nothing runs.
// Context fields that the library reports back (n_ctx, n_batch, n_ubatch, n_threads) are compared after the
// context is made, and the K/V cache type is checked in llama.cpp's own log. The layout is that of the pinned
// package (kPinnedPackage); another version must pass the same checks or be refused.
//
// x86-64 System V: a struct larger than 16 bytes is returned through a caller-provided buffer and passed by value
// in the caller's stack argument area, where the callee reads its own sizeof(struct) bytes from the start. A
// block larger than the real struct is therefore safe both ways as long as it is the last (only) stack-passed
// argument, which holds for every call below.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace llamacpp {

inline constexpr const char* kPinnedPackage = "@node-llama-cpp/linux-x64@3.22.1";
inline constexpr const char* kPinnedCommit = "0ad4a86";  // llama_build_info() of the pinned package: "b1-0ad4a86"

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An opaque parameter block (larger than any of the three structs; see the file comment).
struct alignas(16) param_block {
  unsigned char bytes[1024];
  template <class T>
  T get(std::size_t offset) const {
    T v;
    std::memcpy(&v, bytes + offset, sizeof(T));
    return v;
  }
  template <class T>
  void set(std::size_t offset, T v) {
    std::memcpy(bytes + offset, &v, sizeof(T));
  }
};

// The fields this harness reads or writes, with their offsets and the default values that identify them.
namespace param_layout {
struct u32_field {
  const char* name;
  std::size_t offset;
  std::uint32_t default_value;
};
struct f32_field {
  const char* name;
  std::size_t offset;
  float default_value;
};
struct u8_field {
  const char* name;
  std::size_t offset;
  std::uint8_t default_value;
};
// llama_context_params
inline constexpr u32_field ctx_n_ctx{"n_ctx", 0, 512};
inline constexpr u32_field ctx_n_batch{"n_batch", 4, 2048};
inline constexpr u32_field ctx_n_ubatch{"n_ubatch", 8, 512};
inline constexpr u32_field ctx_n_seq_max{"n_seq_max", 12, 1};
inline constexpr u32_field ctx_n_threads{"n_threads", 28, 4};  // GGML_DEFAULT_N_THREADS
inline constexpr u32_field ctx_n_threads_batch{"n_threads_batch", 32, 4};
inline constexpr u32_field ctx_rope_scaling_type{"rope_scaling_type", 40, 0xffffffffu};  // -1: from the model
inline constexpr u32_field ctx_pooling_type{"pooling_type", 44, 0xffffffffu};
inline constexpr u32_field ctx_attention_type{"attention_type", 48, 0xffffffffu};
inline constexpr u32_field ctx_flash_attn_type{"flash_attn_type", 52, 0xffffffffu};  // -1: auto
inline constexpr f32_field ctx_rope_freq_base{"rope_freq_base", 56, 0.0f};  // 0: from the model
inline constexpr f32_field ctx_rope_freq_scale{"rope_freq_scale", 60, 0.0f};
inline constexpr f32_field ctx_yarn_ext_factor{"yarn_ext_factor", 64, -1.0f};  // negative: from the model
inline constexpr f32_field ctx_yarn_attn_factor{"yarn_attn_factor", 68, -1.0f};
inline constexpr f32_field ctx_yarn_beta_fast{"yarn_beta_fast", 72, -1.0f};
inline constexpr f32_field ctx_yarn_beta_slow{"yarn_beta_slow", 76, -1.0f};
inline constexpr u32_field ctx_yarn_orig_ctx{"yarn_orig_ctx", 80, 0};
inline constexpr f32_field ctx_defrag_thold{"defrag_thold", 84, -1.0f};
inline constexpr u32_field ctx_type_k{"type_k", 104, 1};  // GGML_TYPE_F16
inline constexpr u32_field ctx_type_v{"type_v", 108, 1};
inline constexpr u8_field ctx_embeddings{"embeddings", 128, 0};
inline constexpr u8_field ctx_offload_kqv{"offload_kqv", 129, 1};
// llama_model_quantize_params
inline constexpr u32_field q_nthread{"nthread", 0, 0};
inline constexpr u32_field q_ftype{"ftype", 4, 7};  // LLAMA_FTYPE_MOSTLY_Q8_0
inline constexpr u8_field q_allow_requantize{"allow_requantize", 16, 0};
inline constexpr u8_field q_quantize_output_tensor{"quantize_output_tensor", 17, 1};
inline constexpr u8_field q_only_copy{"only_copy", 18, 0};
inline constexpr u8_field q_pure{"pure", 19, 0};
}  // namespace param_layout

// ggml_log_level
enum class log_level : int { none = 0, debug = 1, info = 2, warn = 3, error = 4, cont = 5 };

// llama_ftype values (llama.h) by the names llama-quantize and qroar use.
struct ftype_name {
  const char* name;
  int value;
};
inline constexpr ftype_name kFtypes[] = {
    {"f32", 0},     {"f16", 1},     {"q4_0", 2},    {"q4_1", 3},    {"q8_0", 7},    {"q5_0", 8},
    {"q5_1", 9},    {"q2_K", 10},   {"q3_K_S", 11}, {"q3_K_M", 12}, {"q3_K_L", 13}, {"q4_K_S", 14},
    {"q4_K_M", 15}, {"q5_K_S", 16}, {"q5_K_M", 17}, {"q6_K", 18},   {"bf16", 32},
};
inline int ftype_from_name(const std::string& name) {
  for (const auto& f : kFtypes)
    if (name == f.name) return f.value;
  throw error("unknown llama.cpp file type '" + name + "'");
}

struct batch {  // struct llama_batch (unchanged since 2023)
  std::int32_t n_tokens;
  std::int32_t* token;
  float* embd;
  std::int32_t* pos;
  std::int32_t* n_seq_id;
  std::int32_t** seq_id;
  std::int8_t* logits;
};
static_assert(sizeof(batch) == 56, "struct llama_batch is 56 bytes on x86-64");

// The loaded library: function pointers and the log of every message at warn level or above.
class library {
 public:
  struct model;
  struct context;
  struct vocab;

  // Opens libllama from `dir` (the package's bins/linux-x64), loads its CPU backends and checks the parameter
  // layout. Throws llamacpp::error naming what is missing or different.
  static library& open(const std::string& dir) {
    static std::mutex m;
    static library* lib = nullptr;
    std::lock_guard<std::mutex> lock(m);
    if (lib) {
      if (lib->dir_ != dir) throw error("llama.cpp is already open from " + lib->dir_);
      return *lib;
    }
    lib = new library(dir);  // lives for the process: llama.cpp's backends cannot be unloaded cleanly
    return *lib;
  }

  const std::string& dir() const { return dir_; }
  std::string build_info() const { return build_info_; }

  // Messages logged at warn or error level since the last clear (llama.cpp and ggml), one line each.
  std::vector<std::string> warnings() const {
    std::lock_guard<std::mutex> lock(log_mutex_);
    return warnings_;
  }
  std::string full_log() const {
    std::lock_guard<std::mutex> lock(log_mutex_);
    return log_;
  }
  void clear_log() {
    std::lock_guard<std::mutex> lock(log_mutex_);
    warnings_.clear();
    log_.clear();
    current_.clear();
  }

  param_block context_defaults() const { return context_default_params_(); }
  param_block model_defaults() const { return model_default_params_(); }
  param_block quantize_defaults() const { return quantize_default_params_(); }

  // Function pointers (signatures of llama.h).
  model* (*model_load_from_file)(const char*, param_block) = nullptr;
  void (*model_free)(model*) = nullptr;
  context* (*init_from_model)(model*, param_block) = nullptr;
  void (*free_context)(context*) = nullptr;
  const vocab* (*model_get_vocab)(const model*) = nullptr;
  std::int32_t (*vocab_n_tokens)(const vocab*) = nullptr;
  std::int32_t (*model_n_ctx_train)(const model*) = nullptr;
  std::int32_t (*model_n_embd)(const model*) = nullptr;
  std::int32_t (*model_n_layer)(const model*) = nullptr;
  float (*model_rope_freq_scale_train)(const model*) = nullptr;
  std::int32_t (*model_meta_val_str)(const model*, const char*, char*, std::size_t) = nullptr;
  std::uint32_t (*n_ctx)(const context*) = nullptr;
  std::uint32_t (*n_batch)(const context*) = nullptr;
  std::uint32_t (*n_ubatch)(const context*) = nullptr;
  std::int32_t (*n_threads)(context*) = nullptr;
  void* (*get_memory)(const context*) = nullptr;
  void (*memory_clear)(void*, bool) = nullptr;
  batch (*batch_init)(std::int32_t, std::int32_t, std::int32_t) = nullptr;
  void (*batch_free)(batch) = nullptr;
  std::int32_t (*decode)(context*, batch) = nullptr;
  float* (*get_logits_ith)(context*, std::int32_t) = nullptr;
  std::uint32_t (*model_quantize)(const char*, const char*, const param_block*) = nullptr;
  std::int32_t (*tokenize)(const vocab*, const char*, std::int32_t, std::int32_t*, std::int32_t, bool, bool) = nullptr;

 private:
  explicit library(const std::string& dir) : dir_(dir) {
    auto open_lib = [&](const std::string& name) {
      const std::string path = dir + "/" + name;
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (!h) throw error("cannot load " + path + ": " + dlerror());
      return h;
    };
    ggml_ = open_lib("libggml.v0.5.0.so");
    llama_ = open_lib("libllama.v0.5.0.so");
    auto sym = [&](void* h, const char* name) {
      void* p = dlsym(h, name);
      if (!p) throw error(std::string("llama.cpp library in ") + dir_ + " has no function " + name);
      return p;
    };
    auto bind = [&](auto& fn, void* h, const char* name) { fn = reinterpret_cast<std::decay_t<decltype(fn)>>(sym(h, name)); };
    void (*log_set)(void (*)(int, const char*, void*), void*) = nullptr;
    bind(log_set, llama_, "llama_log_set");
    log_set(&library::on_log, this);
    void (*load_all_from_path)(const char*) = nullptr;
    bind(load_all_from_path, ggml_, "ggml_backend_load_all_from_path");
    load_all_from_path(dir.c_str());
    void (*backend_init)() = nullptr;
    bind(backend_init, llama_, "llama_backend_init");
    backend_init();
    std::size_t (*n_devices)() = nullptr;
    bind(n_devices, ggml_, "ggml_backend_dev_count");
    if (n_devices() == 0) throw error("llama.cpp loaded no backend from " + dir + " (no libggml-cpu-*.so for this CPU?)");

    bind(context_default_params_, llama_, "llama_context_default_params");
    bind(model_default_params_, llama_, "llama_model_default_params");
    bind(quantize_default_params_, llama_, "llama_model_quantize_default_params");
    bind(model_load_from_file, llama_, "llama_model_load_from_file");
    bind(model_free, llama_, "llama_model_free");
    bind(init_from_model, llama_, "llama_init_from_model");
    bind(free_context, llama_, "llama_free");
    bind(model_get_vocab, llama_, "llama_model_get_vocab");
    bind(vocab_n_tokens, llama_, "llama_vocab_n_tokens");
    bind(model_n_ctx_train, llama_, "llama_model_n_ctx_train");
    bind(model_n_embd, llama_, "llama_model_n_embd");
    bind(model_n_layer, llama_, "llama_model_n_layer");
    bind(model_rope_freq_scale_train, llama_, "llama_model_rope_freq_scale_train");
    bind(model_meta_val_str, llama_, "llama_model_meta_val_str");
    bind(n_ctx, llama_, "llama_n_ctx");
    bind(n_batch, llama_, "llama_n_batch");
    bind(n_ubatch, llama_, "llama_n_ubatch");
    bind(n_threads, llama_, "llama_n_threads");
    bind(get_memory, llama_, "llama_get_memory");
    bind(memory_clear, llama_, "llama_memory_clear");
    bind(batch_init, llama_, "llama_batch_init");
    bind(batch_free, llama_, "llama_batch_free");
    bind(decode, llama_, "llama_decode");
    bind(get_logits_ith, llama_, "llama_get_logits_ith");
    bind(model_quantize, llama_, "llama_model_quantize");
    bind(tokenize, llama_, "llama_tokenize");
    if (void* common = dlopen((dir + "/libllama-common.so").c_str(), RTLD_NOW | RTLD_LOCAL)) {
      if (auto info = reinterpret_cast<const char* (*)()>(dlsym(common, "_Z16llama_build_infov"))) build_info_ = info();
    }
    check_layout();
  }

  void check_layout() const {
    using namespace param_layout;
    std::string bad;
    const param_block c = context_defaults();
    auto u32 = [&](const param_block& b, const u32_field& f) {
      if (b.get<std::uint32_t>(f.offset) != f.default_value)
        bad += std::string(" ") + f.name + "@" + std::to_string(f.offset) + "=" +
               std::to_string(b.get<std::uint32_t>(f.offset)) + " (expected " + std::to_string(f.default_value) + ")";
    };
    auto f32 = [&](const param_block& b, const f32_field& f) {
      if (b.get<float>(f.offset) != f.default_value)
        bad += std::string(" ") + f.name + "@" + std::to_string(f.offset) + "=" + std::to_string(b.get<float>(f.offset)) +
               " (expected " + std::to_string(f.default_value) + ")";
    };
    auto u8 = [&](const param_block& b, const u8_field& f) {
      if (b.get<std::uint8_t>(f.offset) != f.default_value)
        bad += std::string(" ") + f.name + "@" + std::to_string(f.offset) + "=" +
               std::to_string(b.get<std::uint8_t>(f.offset)) + " (expected " + std::to_string(f.default_value) + ")";
    };
    for (const auto& f : {ctx_n_ctx, ctx_n_batch, ctx_n_ubatch, ctx_n_seq_max, ctx_n_threads, ctx_n_threads_batch,
                          ctx_rope_scaling_type, ctx_pooling_type, ctx_attention_type, ctx_flash_attn_type,
                          ctx_yarn_orig_ctx, ctx_type_k, ctx_type_v})
      u32(c, f);
    for (const auto& f : {ctx_rope_freq_base, ctx_rope_freq_scale, ctx_yarn_ext_factor, ctx_yarn_attn_factor,
                          ctx_yarn_beta_fast, ctx_yarn_beta_slow, ctx_defrag_thold})
      f32(c, f);
    for (const auto& f : {ctx_embeddings, ctx_offload_kqv}) u8(c, f);
    const param_block q = quantize_defaults();
    for (const auto& f : {q_nthread, q_ftype}) u32(q, f);
    for (const auto& f : {q_allow_requantize, q_quantize_output_tensor, q_only_copy, q_pure}) u8(q, f);
    if (!bad.empty())
      throw error("llama.cpp in " + dir_ + " (" + build_info_ + ") has another parameter layout than " + kPinnedPackage +
                  " (" + kPinnedCommit + "):" + bad);
  }

  static void on_log(int level, const char* text, void* self_ptr) {
    auto* self = static_cast<library*>(self_ptr);
    std::lock_guard<std::mutex> lock(self->log_mutex_);
    if (level != static_cast<int>(log_level::cont)) self->level_ = level;
    self->log_ += text ? text : "";
    self->current_ += text ? text : "";
    std::size_t nl;
    while ((nl = self->current_.find('\n')) != std::string::npos) {
      if (self->level_ >= static_cast<int>(log_level::warn) && nl > 0) self->warnings_.push_back(self->current_.substr(0, nl));
      self->current_.erase(0, nl + 1);
    }
    if (const char* echo = std::getenv("QROAR_LLAMACPP_LOG"); echo && *echo == '1') std::fputs(text ? text : "", stderr);
  }

  std::string dir_;
  std::string build_info_;
  void* ggml_ = nullptr;
  void* llama_ = nullptr;
  param_block (*context_default_params_)() = nullptr;
  param_block (*model_default_params_)() = nullptr;
  param_block (*quantize_default_params_)() = nullptr;
  mutable std::mutex log_mutex_;
  std::string log_, current_;
  std::vector<std::string> warnings_;
  int level_ = 0;
};

// A model loaded with llama.cpp's default parameters, freed on scope exit.
class loaded_model {
 public:
  loaded_model(library& lib, const std::string& path) : lib_(lib), model_(lib.model_load_from_file(path.c_str(), lib.model_defaults())) {
    if (!model_) throw error("llama.cpp could not load " + path + ":\n" + lib.full_log());
  }
  ~loaded_model() { lib_.model_free(model_); }
  loaded_model(const loaded_model&) = delete;
  loaded_model& operator=(const loaded_model&) = delete;
  library::model* get() const { return model_; }

 private:
  library& lib_;
  library::model* model_;
};

// RoPE settings of a context: what the file records (nothing overridden) or llama.cpp's context overrides.
struct rope_override {
  enum class type { from_file, none, linear, yarn } kind = type::from_file;
  float freq_base = 0.0f;     // 0: the file's
  float freq_scale = 0.0f;    // 1 / factor; 0: the file's
  float ext_factor = -1.0f;   // YaRN; negative: llama.cpp's default for the scaling type
  float attn_factor = -1.0f;  // negative: the file's / default
  float beta_fast = -1.0f, beta_slow = -1.0f;
  std::uint32_t orig_ctx = 0;  // 0: the file's
};

struct context_options {
  int ctx = 512;
  int threads = 2;
  bool f32_cache = true;        // f32 K and V cache (exact comparison); false: llama.cpp's default f16
  bool flash_attention = false;  // false: disabled; true: llama.cpp's default (auto)
  rope_override rope;
};

struct perplexity_result {
  double mean_nll = 0.0;
  long long tokens_scored = 0;
  int windows = 0;
  std::vector<double> window_mean_nll;
  int n_ctx_train = 0;
  std::string file_type;  // llama.cpp's description of the file's type ("Q4_0", "all F32", ...) from its log
  double load_seconds = 0.0, eval_seconds = 0.0;
  std::vector<std::string> warnings;  // llama.cpp's log at warn level or above, load and evaluation
};

// Perplexity of `tokens` through llama.cpp, scored exactly as qroar::evaluate_perplexity (docs/evaluation.md):
// windows of ctx tokens every stride (0: ctx) from position 0 of a cleared cache, the first window scoring tokens
// 1..ctx-1, a later one its last `stride` tokens; NLL = logsumexp(logits) - logit[next], in double from llama.cpp's
// float logits.
inline perplexity_result perplexity(library& lib, const std::string& model_path, const std::vector<int>& tokens,
                                    const context_options& o, int stride = 0, int max_windows = 0) {
  using namespace param_layout;
  if (o.ctx < 2) throw error("ctx must be at least 2");
  const int step = stride > 0 ? stride : o.ctx;
  if (static_cast<long long>(tokens.size()) < o.ctx) throw error("fewer tokens than one window");
  lib.clear_log();
  perplexity_result r;
  const auto t0 = std::chrono::steady_clock::now();
  const loaded_model held(lib, model_path);
  library::model* model = held.get();
  r.n_ctx_train = lib.model_n_ctx_train(model);
  {
    const std::string log = lib.full_log(), key = "file type   = ";
    const auto at = log.find(key);
    if (at != std::string::npos) r.file_type = log.substr(at + key.size(), log.find('\n', at) - at - key.size());
  }
  const int n_vocab = lib.vocab_n_tokens(lib.model_get_vocab(model));

  param_block p = lib.context_defaults();
  const auto n = static_cast<std::uint32_t>(o.ctx);
  p.set(ctx_n_ctx.offset, n);
  p.set(ctx_n_batch.offset, n);
  p.set(ctx_n_ubatch.offset, n);
  p.set(ctx_n_threads.offset, static_cast<std::uint32_t>(o.threads));
  p.set(ctx_n_threads_batch.offset, static_cast<std::uint32_t>(o.threads));
  if (o.f32_cache) {
    p.set(ctx_type_k.offset, std::uint32_t{0});  // GGML_TYPE_F32
    p.set(ctx_type_v.offset, std::uint32_t{0});
  }
  p.set(ctx_flash_attn_type.offset, static_cast<std::uint32_t>(o.flash_attention ? -1 : 0));
  const rope_override& ro = o.rope;
  if (ro.kind != rope_override::type::from_file) {
    const int type = ro.kind == rope_override::type::none ? 0 : ro.kind == rope_override::type::linear ? 1 : 2;
    p.set(ctx_rope_scaling_type.offset, static_cast<std::uint32_t>(type));
  }
  p.set(ctx_rope_freq_base.offset, ro.freq_base);
  p.set(ctx_rope_freq_scale.offset, ro.freq_scale);
  p.set(ctx_yarn_ext_factor.offset, ro.ext_factor);
  if (ro.attn_factor >= 0.0f) p.set(ctx_yarn_attn_factor.offset, ro.attn_factor);
  p.set(ctx_yarn_beta_fast.offset, ro.beta_fast);
  p.set(ctx_yarn_beta_slow.offset, ro.beta_slow);
  p.set(ctx_yarn_orig_ctx.offset, ro.orig_ctx);

  library::context* ctx = lib.init_from_model(model, p);
  if (!ctx) throw error("llama.cpp could not make a context for " + model_path + ":\n" + lib.full_log());
  struct ctx_guard {
    library& l;
    library::context* c;
    ~ctx_guard() { l.free_context(c); }
  } cg{lib, ctx};
  // The fields llama.cpp reports back must be what was set (the layout check of the running context).
  if (lib.n_ctx(ctx) < n || lib.n_batch(ctx) != n || lib.n_ubatch(ctx) != n ||
      lib.n_threads(ctx) != o.threads)
    throw error("llama.cpp context does not have the requested n_ctx/n_batch/n_ubatch/n_threads (" +
                std::to_string(lib.n_ctx(ctx)) + "/" + std::to_string(lib.n_batch(ctx)) + "/" +
                std::to_string(lib.n_ubatch(ctx)) + "/" + std::to_string(lib.n_threads(ctx)) + ")");
  if (o.f32_cache && lib.full_log().find("K (f32)") == std::string::npos &&
      lib.full_log().find("type_k = 'f32'") == std::string::npos)
    throw error("llama.cpp did not report an f32 K cache:\n" + lib.full_log());
  const auto t1 = std::chrono::steady_clock::now();
  r.load_seconds = std::chrono::duration<double>(t1 - t0).count();

  batch b = lib.batch_init(o.ctx, 0, 1);
  struct batch_guard {
    library& l;
    batch b;
    ~batch_guard() { l.batch_free(b); }
  } bg{lib, b};
  double total = 0.0;
  for (long long start = 0; start + o.ctx <= static_cast<long long>(tokens.size()); start += step) {
    if (max_windows > 0 && r.windows >= max_windows) break;
    lib.memory_clear(lib.get_memory(ctx), true);
    b.n_tokens = o.ctx;
    for (int i = 0; i < o.ctx; ++i) {
      b.token[i] = tokens[static_cast<std::size_t>(start + i)];
      b.pos[i] = i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = 1;
    }
    if (const int rc = lib.decode(ctx, b); rc != 0)
      throw error("llama_decode failed with " + std::to_string(rc) + ":\n" + lib.full_log());
    const int first = r.windows == 0 ? 1 : std::max(1, o.ctx - step);
    double wsum = 0.0;
    long long wcount = 0;
    for (int pos = first; pos < o.ctx; ++pos) {
      const float* logits = lib.get_logits_ith(ctx, pos - 1);
      if (!logits) throw error("no logits at position " + std::to_string(pos - 1));
      double mx = -INFINITY;
      for (int v = 0; v < n_vocab; ++v) mx = std::max(mx, static_cast<double>(logits[v]));
      double s = 0.0;
      for (int v = 0; v < n_vocab; ++v) s += std::exp(static_cast<double>(logits[v]) - mx);
      const int next = tokens[static_cast<std::size_t>(start + pos)];
      const double nll = mx + std::log(s) - static_cast<double>(logits[next]);
      if (!std::isfinite(nll)) throw error("non-finite NLL from llama.cpp at position " + std::to_string(pos));
      wsum += nll;
      ++wcount;
    }
    total += wsum;
    r.tokens_scored += wcount;
    r.window_mean_nll.push_back(wsum / static_cast<double>(wcount));
    ++r.windows;
  }
  r.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  r.mean_nll = total / static_cast<double>(r.tokens_scored);
  r.warnings = lib.warnings();
  return r;
}

// llama.cpp's tokenization of `text` with the vocabulary of the GGUF model `model_path` (llama_tokenize:
// add_special adds BOS/EOS as the vocabulary says, parse_special matches control tokens in the text).
inline std::vector<int> tokenize(library& lib, const std::string& model_path, const std::string& text, bool add_special,
                                 bool parse_special) {
  lib.clear_log();
  const loaded_model held(lib, model_path);
  library::model* model = held.get();
  const library::vocab* vocab = lib.model_get_vocab(model);
  if (text.size() > 0x7fffffffu) throw error("text too long for llama_tokenize");
  std::vector<std::int32_t> ids(text.size() + 16);
  std::int32_t n = lib.tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), ids.data(),
                                static_cast<std::int32_t>(ids.size()), add_special, parse_special);
  if (n < 0) {  // -n tokens needed
    ids.resize(static_cast<std::size_t>(-n));
    n = lib.tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), ids.data(),
                     static_cast<std::int32_t>(ids.size()), add_special, parse_special);
  }
  if (n < 0) throw error("llama_tokenize failed");
  return std::vector<int>(ids.begin(), ids.begin() + n);
}

struct quantize_options {
  std::string type = "q4_0";  // a name of kFtypes
  bool pure = false;          // every tensor the main type (llama-quantize --pure)
  int threads = 2;
  bool allow_requantize = false;
};

// llama.cpp's quantizer (llama_model_quantize), as llama-quantize runs it (no importance matrix).
inline std::vector<std::string> quantize(library& lib, const std::string& in, const std::string& out,
                                         const quantize_options& o) {
  using namespace param_layout;
  lib.clear_log();
  param_block p = lib.quantize_defaults();
  p.set(q_nthread.offset, static_cast<std::uint32_t>(o.threads));
  p.set(q_ftype.offset, static_cast<std::uint32_t>(ftype_from_name(o.type)));
  p.set(q_pure.offset, static_cast<std::uint8_t>(o.pure ? 1 : 0));
  p.set(q_allow_requantize.offset, static_cast<std::uint8_t>(o.allow_requantize ? 1 : 0));
  if (lib.model_quantize(in.c_str(), out.c_str(), &p) != 0)
    throw error("llama_model_quantize(" + in + " -> " + out + ", " + o.type + ") failed:\n" + lib.full_log());
  return lib.warnings();
}

}  // namespace llamacpp
