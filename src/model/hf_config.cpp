// Hugging Face LLaMA config.json <-> LlamaConfig (torch-free; part of more_base).
#include "more/model/hf_config.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "more/core/error.h"
#include "more/core/safetensors.h"

namespace more {

namespace {

const char* TypeName(const nlohmann::json& v) { return v.type_name(); }

// Required integer field: present and an integer.
int64_t RequiredInt(const nlohmann::json& j, const char* field, const std::string& source) {
  if (!j.contains(field))
    throw Error(fmt::format("{}: required field \"{}\" is missing", source, field),
                "a LLaMA config.json needs vocab_size, hidden_size, intermediate_size, num_hidden_layers "
                "and num_attention_heads");
  const auto& v = j[field];
  if (!v.is_number_integer())
    throw Error(fmt::format("{}: field \"{}\" must be an integer, found {} {}", source, field, TypeName(v), v.dump()),
                "fix the value in config.json");
  return v.get<int64_t>();
}

// Optional integer field: absent or null keeps the default.
void OptionalInt(const nlohmann::json& j, const char* field, const std::string& source, int64_t& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  const auto& v = j[field];
  if (!v.is_number_integer())
    throw Error(fmt::format("{}: field \"{}\" must be an integer, found {} {}", source, field, TypeName(v), v.dump()),
                "fix the value in config.json");
  out = v.get<int64_t>();
}

void OptionalDouble(const nlohmann::json& j, const char* field, const std::string& source, double& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  const auto& v = j[field];
  if (!v.is_number())
    throw Error(fmt::format("{}: field \"{}\" must be a number, found {} {}", source, field, TypeName(v), v.dump()),
                "fix the value in config.json");
  out = v.get<double>();
}

void OptionalBool(const nlohmann::json& j, const char* field, const std::string& source, bool& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  const auto& v = j[field];
  if (!v.is_boolean())
    throw Error(fmt::format("{}: field \"{}\" must be true or false, found {} {}", source, field, TypeName(v),
                            v.dump()),
                "fix the value in config.json");
  out = v.get<bool>();
}

// Token ids: an integer, or (newer configs, e.g. several EOS ids) a list whose first entry is used.
void OptionalTokenId(const nlohmann::json& j, const char* field, const std::string& source, int64_t& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  const auto& v = j[field];
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
    out = v[0].get<int64_t>();
    return;
  }
  OptionalInt(j, field, source, out);
}

}  // namespace

int64_t LlamaConfig::NumParams() const {
  const int64_t d = hidden_size, hd = head_dim(), h = num_attention_heads, kv = num_key_value_heads;
  const int64_t attn = d * h * hd          // q_proj [H*hd, D]
                       + 2 * d * kv * hd   // k_proj, v_proj [KV*hd, D]
                       + h * hd * d;       // o_proj [D, H*hd]
  const int64_t bias = qkv_bias ? h * hd + 2 * kv * hd : 0;  // q, k, v biases [H*hd], [KV*hd]
  const int64_t mlp = 3 * d * intermediate_size;  // gate, up [I, D]; down [D, I]
  const int64_t per_layer = attn + bias + mlp + 2 * d;  // + input / post-attention RMSNorm weights
  const int64_t embed = vocab_size * d;
  return embed + num_hidden_layers * per_layer + d /* final norm */ + (tie_word_embeddings ? 0 : embed);
}

void LlamaConfig::Validate(const std::string& source) const {
  auto positive = [&](const char* field, int64_t v) {
    if (v <= 0)
      throw Error(fmt::format("{}: \"{}\" must be positive, got {}", source, field, v), "fix config.json");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("max_position_embeddings", max_position_embeddings);
  if (hidden_size % num_attention_heads != 0)
    throw Error(fmt::format("{}: hidden_size {} is not divisible by num_attention_heads {}", source, hidden_size,
                            num_attention_heads),
                "head_dim = hidden_size / num_attention_heads must be a whole number");
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(fmt::format("{}: num_attention_heads {} is not divisible by num_key_value_heads {}", source,
                            num_attention_heads, num_key_value_heads),
                "grouped-query attention shares each kv head between num_attention_heads / "
                "num_key_value_heads query heads");
  if (head_dim() % 2 != 0)
    throw Error(fmt::format("{}: head_dim {} (hidden_size / num_attention_heads) is odd", source, head_dim()),
                "rotary embeddings rotate pairs of dimensions, so head_dim must be even");
  if (!(rms_norm_eps > 0))
    throw Error(fmt::format("{}: rms_norm_eps must be positive, got {}", source, rms_norm_eps), "fix config.json");
  if (!(rope_theta > 0))
    throw Error(fmt::format("{}: rope_theta must be positive, got {}", source, rope_theta), "fix config.json");
}

LlamaConfig LlamaConfigFromJson(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object())
    throw Error(fmt::format("{}: expected a JSON object, found {}", source, TypeName(j)),
                "config.json must be a Hugging Face model config");
  LlamaConfig c;
  c.vocab_size = RequiredInt(j, "vocab_size", source);
  c.hidden_size = RequiredInt(j, "hidden_size", source);
  c.intermediate_size = RequiredInt(j, "intermediate_size", source);
  c.num_hidden_layers = RequiredInt(j, "num_hidden_layers", source);
  c.num_attention_heads = RequiredInt(j, "num_attention_heads", source);
  c.num_key_value_heads = c.num_attention_heads;  // HF default: plain multi-head attention
  OptionalInt(j, "num_key_value_heads", source, c.num_key_value_heads);
  OptionalInt(j, "max_position_embeddings", source, c.max_position_embeddings);
  OptionalDouble(j, "rms_norm_eps", source, c.rms_norm_eps);
  OptionalDouble(j, "rope_theta", source, c.rope_theta);
  OptionalBool(j, "tie_word_embeddings", source, c.tie_word_embeddings);
  OptionalTokenId(j, "bos_token_id", source, c.bos_token_id);
  OptionalTokenId(j, "eos_token_id", source, c.eos_token_id);
  if (j.contains("torch_dtype") && !j["torch_dtype"].is_null()) {
    if (!j["torch_dtype"].is_string())
      throw Error(fmt::format("{}: field \"torch_dtype\" must be a string, found {}", source, j["torch_dtype"].dump()),
                  "e.g. \"float16\", \"bfloat16\" or \"float32\"");
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  }

  // Architecture variants this implementation does not compute: refuse rather than silently
  // produce different outputs from the original model.
  if (j.contains("hidden_act") && j["hidden_act"].is_string() && j["hidden_act"] != "silu")
    throw Error(fmt::format("{}: hidden_act \"{}\" is not supported", source, j["hidden_act"].get<std::string>()),
                "LLaMA uses \"silu\" (SwiGLU MLP)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    throw Error(fmt::format("{}: rope_scaling {} is not supported", source, j["rope_scaling"].dump()),
                "only plain rotary embeddings (rope_scaling null) are implemented");
  for (const char* f : {"attention_bias", "mlp_bias"})
    if (j.contains(f) && j[f].is_boolean() && j[f].get<bool>())
      throw Error(fmt::format("{}: \"{}\": true is not supported", source, f),
                  "the LLaMA projections here have no bias");
  if (j.contains("head_dim") && j["head_dim"].is_number_integer() && c.num_attention_heads > 0 &&
      j["head_dim"].get<int64_t>() != c.hidden_size / c.num_attention_heads)
    throw Error(fmt::format("{}: head_dim {} differs from hidden_size / num_attention_heads = {}", source,
                            j["head_dim"].get<int64_t>(), c.hidden_size / c.num_attention_heads),
                "a separate head_dim is not supported");
  if (j.contains("model_type") && j["model_type"].is_string() && j["model_type"] != "llama")
    spdlog::warn("{}: model_type is \"{}\", not \"llama\"; treating it as a LLaMA architecture", source,
                 j["model_type"].get<std::string>());
  c.Validate(source);
  return c;
}

LlamaConfig LoadLlamaConfig(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string path =
      fs::is_directory(dir_or_file, ec) ? (fs::path(dir_or_file) / "config.json").string() : dir_or_file;
  if (!fs::exists(path, ec))
    throw Error(fmt::format("model config '{}' does not exist", path),
                "model.path must be a Hugging Face model directory containing config.json");
  const std::string text = ReadFileToString(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("model config '{}' is not valid JSON: {}", path, e.what()), "fix or re-download config.json");
  }
  return LlamaConfigFromJson(j, path);
}

nlohmann::json LlamaConfigToJson(const LlamaConfig& c) {
  return nlohmann::json{
      {"architectures", nlohmann::json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"attention_bias", false},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", c.torch_dtype},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
  };
}

}  // namespace more
