// make_tiny_llama: writes a randomly initialised LLaMA in exactly the Hugging Face layout
// (config.json + model.safetensors, or model-0000k-of-0000K.safetensors shards plus
// model.safetensors.index.json), without torch. Tests and examples use it as a stand-in for a
// downloaded checkpoint; tests/golden/llama_ref.py computes reference logits from its output.
//
// Weights: every matrix ~ N(0, init_std) and every RMSNorm weight = 1. The normal samples come
// from std::mt19937_64(seed) through our own Box-Muller transform (std::normal_distribution
// differs between standard libraries), drawn tensor by tensor in HF order (embed_tokens,
// layers 0..L-1 in the order q k v o gate up down, lm_head), so a given seed yields the same
// weights whatever --num-shards is. Values are drawn in float, then rounded to --dtype.
#include <sentencepiece_processor.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "more/core/main_guard.h"
#include "more/core/dtype_convert.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/model/hf_config.h"

namespace fs = std::filesystem;

namespace {

constexpr const char* kUsage = R"(make_tiny_llama: write a random LLaMA in the Hugging Face layout (no torch)

usage: make_tiny_llama --out DIR (--tokenizer T.model | --vocab-size N) [options]

  --out DIR              output directory (created; old model*.safetensors* files there are replaced)
  --tokenizer T.model    SentencePiece model: vocab_size, bos/eos ids from it; copied to DIR/tokenizer.model
  --vocab-size N         vocabulary size (without --tokenizer; with it, may pad the vocab beyond the model's)
  --hidden-size D        default 64
  --intermediate-size I  default 128
  --layers L             default 2
  --heads H              default 4
  --kv-heads KV          default = heads (fewer: grouped-query attention; H % KV == 0)
  --seed S               default 0
  --dtype f32|bf16|f16   storage dtype (config.json torch_dtype follows), default f32
  --num-shards K         K > 1: model-0000k-of-0000K.safetensors + model.safetensors.index.json
  --init-std X           std of the normal init of every matrix, default 0.02
  --max-position N       max_position_embeddings, default 2048
  --rope-theta X         default 10000
  --rms-norm-eps X       default 1e-5
  --tie-embeddings       tie_word_embeddings: no lm_head.weight; the LM head reuses embed_tokens
  --help                 this text
)";

// Normal samples from mt19937_64 via Box-Muller (both outputs of each pair are used).
class NormalGen {
 public:
  explicit NormalGen(uint64_t seed) : rng_(seed) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // uniforms in (0, 1] and [0, 1) with 53 random bits
    const double u1 = 1.0 - static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * 3.14159265358979323846 * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  bool is_norm;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// Every tensor of HF LlamaForCausalLM, in HF order.
std::vector<Spec> LlamaTensors(const more::LlamaConfig& c) {
  const int64_t v = c.vocab_size, d = c.hidden_size, i = c.intermediate_size, hd = c.head_dim();
  const int64_t h = c.num_attention_heads, kv = c.num_key_value_heads;
  std::vector<Spec> out{{"model.embed_tokens.weight", {v, d}, false}};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    out.push_back({p + "input_layernorm.weight", {d}, true});
    out.push_back({p + "self_attn.q_proj.weight", {h * hd, d}, false});
    out.push_back({p + "self_attn.k_proj.weight", {kv * hd, d}, false});
    out.push_back({p + "self_attn.v_proj.weight", {kv * hd, d}, false});
    out.push_back({p + "self_attn.o_proj.weight", {d, h * hd}, false});
    out.push_back({p + "post_attention_layernorm.weight", {d}, true});
    out.push_back({p + "mlp.gate_proj.weight", {i, d}, false});
    out.push_back({p + "mlp.up_proj.weight", {i, d}, false});
    out.push_back({p + "mlp.down_proj.weight", {d, i}, false});
  }
  out.push_back({"model.norm.weight", {d}, true});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {v, d}, false});
  return out;
}

struct Args {
  std::map<std::string, std::string> kv;
  bool tie = false;
  bool help = false;
};

Args ParseArgs(int argc, char** argv) {
  static const char* kKeys[] = {"--out",        "--tokenizer", "--vocab-size",  "--hidden-size",
                                "--intermediate-size", "--layers", "--heads",    "--kv-heads",
                                "--seed",       "--dtype",     "--num-shards",  "--init-std",
                                "--max-position", "--rope-theta", "--rms-norm-eps"};
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      a.help = true;
      continue;
    }
    if (arg == "--tie-embeddings") {
      a.tie = true;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    bool known = false;
    for (const char* k : kKeys) known = known || arg == k;
    if (!known) throw more::Error(fmt::format("unknown argument '{}'", arg), "see make_tiny_llama --help");
    if (!has_value) {
      if (i + 1 >= argc) throw more::Error(fmt::format("{} needs a value", arg), "see make_tiny_llama --help");
      value = argv[++i];
    }
    a.kv[arg] = value;
  }
  return a;
}

int64_t GetInt(const Args& a, const std::string& key, int64_t def) {
  auto it = a.kv.find(key);
  if (it == a.kv.end()) return def;
  try {
    size_t pos = 0;
    const long long v = std::stoll(it->second, &pos);
    if (pos != it->second.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    throw more::Error(fmt::format("{} expects an integer, got '{}'", key, it->second));
  }
}

double GetDouble(const Args& a, const std::string& key, double def) {
  auto it = a.kv.find(key);
  if (it == a.kv.end()) return def;
  try {
    size_t pos = 0;
    const double v = std::stod(it->second, &pos);
    if (pos != it->second.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    throw more::Error(fmt::format("{} expects a number, got '{}'", key, it->second));
  }
}

// Removes files of an earlier model in `dir` so the collection logic cannot pick up a stale
// index or single file next to the new one.
void RemoveOldWeights(const fs::path& dir) {
  static const std::regex kShard(R"(model-\d+-of-\d+\.safetensors)");
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (f == "model.safetensors" || f == "model.safetensors.index.json" || std::regex_match(f, kShard))
      fs::remove(e.path());
  }
}

int Run(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  if (args.help) {
    std::cout << kUsage;
    return 0;
  }
  if (!args.kv.count("--out")) throw more::Error("--out DIR is required", "see make_tiny_llama --help");
  const fs::path out = args.kv.at("--out");

  more::LlamaConfig c;
  c.hidden_size = GetInt(args, "--hidden-size", 64);
  c.intermediate_size = GetInt(args, "--intermediate-size", 128);
  c.num_hidden_layers = GetInt(args, "--layers", 2);
  c.num_attention_heads = GetInt(args, "--heads", 4);
  c.num_key_value_heads = GetInt(args, "--kv-heads", c.num_attention_heads);
  c.max_position_embeddings = GetInt(args, "--max-position", 2048);
  c.rope_theta = GetDouble(args, "--rope-theta", 10000.0);
  c.rms_norm_eps = GetDouble(args, "--rms-norm-eps", 1e-5);
  c.tie_word_embeddings = args.tie;
  const uint64_t seed = static_cast<uint64_t>(GetInt(args, "--seed", 0));
  const double init_std = GetDouble(args, "--init-std", 0.02);
  const int64_t num_shards = GetInt(args, "--num-shards", 1);
  if (num_shards < 1) throw more::Error(fmt::format("--num-shards must be >= 1, got {}", num_shards));
  if (!(init_std >= 0)) throw more::Error(fmt::format("--init-std must be >= 0, got {}", init_std));

  const std::string dtype_flag = args.kv.count("--dtype") ? args.kv.at("--dtype") : "f32";
  more::DType dtype;
  if (dtype_flag == "f32") {
    dtype = more::DType::kF32;
    c.torch_dtype = "float32";
  } else if (dtype_flag == "bf16") {
    dtype = more::DType::kBF16;
    c.torch_dtype = "bfloat16";
  } else if (dtype_flag == "f16") {
    dtype = more::DType::kF16;
    c.torch_dtype = "float16";
  } else {
    throw more::Error(fmt::format("--dtype must be f32, bf16 or f16, got '{}'", dtype_flag));
  }

  std::string tokenizer_bytes;
  if (args.kv.count("--tokenizer")) {
    const std::string tok = args.kv.at("--tokenizer");
    sentencepiece::SentencePieceProcessor sp;
    const auto status = sp.Load(tok);
    if (!status.ok())
      throw more::Error(fmt::format("cannot load SentencePiece model '{}': {}", tok, status.ToString()),
                        "pass a .model file written by SentencePiece (e.g. shard_data tokenizer)");
    c.vocab_size = sp.GetPieceSize();
    if (sp.bos_id() >= 0) c.bos_token_id = sp.bos_id();
    if (sp.eos_id() >= 0) c.eos_token_id = sp.eos_id();
    if (args.kv.count("--vocab-size")) {
      const int64_t v = GetInt(args, "--vocab-size", 0);
      if (v < c.vocab_size)
        throw more::Error(fmt::format("--vocab-size {} is smaller than the tokenizer's {} pieces ('{}')", v,
                                      c.vocab_size, tok),
                          "leave --vocab-size out to use the tokenizer's size");
      c.vocab_size = v;
    }
    tokenizer_bytes = more::ReadFileToString(tok);
  } else if (args.kv.count("--vocab-size")) {
    c.vocab_size = GetInt(args, "--vocab-size", 0);
  } else {
    throw more::Error("give --tokenizer T.model or --vocab-size N", "see make_tiny_llama --help");
  }
  c.Validate("make_tiny_llama arguments");

  const std::vector<Spec> specs = LlamaTensors(c);
  if (num_shards > static_cast<int64_t>(specs.size()))
    throw more::Error(fmt::format("--num-shards {} exceeds the number of tensors ({})", num_shards, specs.size()));

  // Balanced contiguous split by bytes; every shard gets at least one tensor.
  const size_t esize = more::DTypeSize(dtype);
  uint64_t total_bytes = 0;
  for (const auto& s : specs) total_bytes += static_cast<uint64_t>(s.numel()) * esize;
  std::vector<int64_t> shard_of(specs.size());
  {
    int64_t s = 0;
    uint64_t before = 0, in_shard = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      const uint64_t bytes = static_cast<uint64_t>(specs[i].numel()) * esize;
      const int64_t tensors_left = static_cast<int64_t>(specs.size() - i);
      const int64_t shards_after = num_shards - 1 - s;
      const bool past_target =
          static_cast<long double>(before) + bytes / 2.0L >
          static_cast<long double>(total_bytes) * static_cast<long double>(s + 1) / num_shards;
      if (in_shard > 0 && shards_after > 0 && (past_target || tensors_left == shards_after)) {
        ++s;
        in_shard = 0;
      }
      shard_of[i] = s;
      in_shard += bytes + 1;  // +1: a shard holding only empty tensors still counts as used
      before += bytes;
    }
  }

  fs::create_directories(out);
  RemoveOldWeights(out);
  auto file_name = [&](int64_t s) {
    return num_shards == 1 ? std::string("model.safetensors")
                           : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, num_shards);
  };

  NormalGen gen(seed);
  nlohmann::json weight_map = nlohmann::json::object();
  size_t next = 0;
  for (int64_t s = 0; s < num_shards; ++s) {
    // streamed tensor by tensor (drawn in HF order, placed in name order): memory stays at
    // about one tensor, so a 7B-shaped model can be made on a small machine
    std::vector<more::TensorInfo> infos;
    for (size_t i = next; i < specs.size() && shard_of[i] == s; ++i) infos.push_back({specs[i].name, dtype, specs[i].shape});
    more::SafetensorsStreamWriter w((out / file_name(s)).string(), infos, {{"format", "pt"}});
    for (; next < specs.size() && shard_of[next] == s; ++next) {
      const Spec& spec = specs[next];
      std::vector<float> values(static_cast<size_t>(spec.numel()));
      for (auto& x : values) x = spec.is_norm ? 1.0f : static_cast<float>(gen.Next() * init_std);
      std::vector<uint8_t> bytes(values.size() * esize);
      more::ConvertFromF32(dtype, values.data(), bytes.data(), static_cast<int64_t>(values.size()));
      w.Append(spec.name, bytes.data(), bytes.size());
      weight_map[spec.name] = file_name(s);
    }
    w.Finish();
  }
  if (num_shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    more::WriteFileAtomic((out / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  more::WriteFileAtomic((out / "config.json").string(), more::LlamaConfigToJson(c).dump(2) + "\n");
  if (!tokenizer_bytes.empty()) more::WriteFileAtomic((out / "tokenizer.model").string(), tokenizer_bytes);

  std::cout << fmt::format(
      "wrote {}: LLaMA vocab {} hidden {} intermediate {} layers {} heads {} kv_heads {}, {} parameters, "
      "{} in {} file(s), seed {}\n",
      out.string(), c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
      c.num_key_value_heads, c.NumParams(), more::DTypeName(dtype), num_shards, seed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return more::RunTool(argc, argv, Run); }
