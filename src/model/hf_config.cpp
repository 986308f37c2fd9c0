// Hugging Face LLaMA config.json <-> LlamaConfig (torch-free; part of more_base).
#include "more/model/hf_config.h"

#include <cmath>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

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


// Fields that do not change the forward or the training computation: bookkeeping, generation
// defaults of old configs, and settings transformers itself ignores for these models.
// pretraining_tp > 1 only splits the same matmuls into slices (LLaMA 2's config carries it).
const std::set<std::string>& NeutralFields() {
  static const std::set<std::string> f = {
      "architectures", "transformers_version", "use_cache", "initializer_range", "pad_token_id", "sep_token_id",
      "decoder_start_token_id", "_name_or_path", "name_or_path", "output_attentions", "output_hidden_states",
      "return_dict", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params",
      "finetuning_task", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder", "add_cross_attention",
      "tie_encoder_decoder", "cross_attention_hidden_size", "_attn_implementation_autoset", "torchscript",
      "use_bfloat16", "tf_legacy_loss", "pretraining_tp", "max_window_layers", "max_sequence_length",
      "max_length", "min_length",
      "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k",
      "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
      "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
      "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
      "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens"};
  return f;
}

// Fields this reader interprets (implemented, or checked and refused when they change the math).
const std::set<std::string>& ReadFields() {
  static const std::set<std::string> f = {
      "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
      "rope_parameters", "tie_word_embeddings", "torch_dtype", "dtype", "bos_token_id", "eos_token_id",
      "hidden_act", "attention_bias", "mlp_bias", "attention_dropout", "sliding_window", "use_sliding_window",
      "layer_types", "use_mrope", "pruned_heads"};
  return f;
}

// One rope parameter object (4.x rope_scaling or 5.x rope_parameters) -> its scaling, and its
// rope_theta when it holds one. `field` names it in errors.
RopeScaling ParseRope(const nlohmann::json& r, const std::string& field, const std::string& source, double* theta) {
  if (!r.is_object())
    throw Error(fmt::format("{}: \"{}\" must be an object, found {}", source, field, r.dump()), "fix config.json");
  RopeScaling s;
  std::string type;
  for (const char* key : {"rope_type", "type"})
    if (r.contains(key) && !r[key].is_null()) {
      if (!r[key].is_string())
        throw Error(fmt::format("{}: \"{}.{}\" must be a string, found {}", source, field, key, r[key].dump()),
                    "e.g. \"default\", \"linear\" or \"llama3\"");
      if (!type.empty() && type != r[key].get<std::string>())
        throw Error(fmt::format("{}: \"{}\" gives two types, \"{}\" and \"{}\"", source, field, type,
                                r[key].get<std::string>()),
                    "keep one of rope_type / type");
      type = r[key].get<std::string>();
    }
  for (const auto& [key, v] : r.items())
    if (v.is_object())
      throw Error(fmt::format("{}: \"{}\" holds per-layer-type parameters (\"{}\"), which are not supported",
                              source, field, key),
                  "one rope for every layer (LLaMA, Mistral, Qwen2) is implemented");
  s.type = type.empty() ? "default" : type;
  if (s.type != "default" && s.type != "linear" && s.type != "llama3")
    throw Error(fmt::format("{}: {} type \"{}\" is not supported", source, field, s.type),
                "implemented rope types: default, linear and llama3 (dynamic, yarn, longrope, ... are not)");
  std::set<std::string> allowed = {"rope_type", "type", "rope_theta"};
  if (s.type == "linear") allowed.insert("factor");
  if (s.type == "llama3")
    allowed.insert({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  for (const auto& [key, v] : r.items())
    if (!allowed.count(key))
      throw Error(fmt::format("{}: \"{}.{}\" is not supported for rope type \"{}\" (value {})", source, field, key,
                              s.type, v.dump()),
                  fmt::format("rope type {} reads only [{}]", s.type, fmt::join(allowed, ", ")));
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!r.contains(key) || !r[key].is_number())
      throw Error(fmt::format("{}: rope type \"{}\" needs a number \"{}.{}\"", source, s.type, field, key),
                  "fix config.json");
    return r[key];
  };
  if (s.type == "linear" || s.type == "llama3") s.factor = need("factor").get<double>();
  if (s.type == "llama3") {
    s.low_freq_factor = need("low_freq_factor").get<double>();
    s.high_freq_factor = need("high_freq_factor").get<double>();
    if (!need("original_max_position_embeddings").is_number_integer())
      throw Error(fmt::format("{}: \"{}.original_max_position_embeddings\" must be an integer", source, field),
                  "fix config.json");
    s.original_max_position_embeddings = r["original_max_position_embeddings"].get<int64_t>();
  }
  if (r.contains("rope_theta") && !r["rope_theta"].is_null()) {
    if (!r["rope_theta"].is_number())
      throw Error(fmt::format("{}: \"{}.rope_theta\" must be a number, found {}", source, field, r["rope_theta"].dump()),
                  "fix config.json");
    if (theta) *theta = r["rope_theta"].get<double>();
  }
  return s;
}

bool SameRope(const RopeScaling& a, const RopeScaling& b) {
  return a.type == b.type && a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

std::string ArchitectureOf(const std::string& model_type) {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

}  // namespace

std::vector<double> LlamaConfig::RopeInvFreq() const {
  const int64_t hd = head_dim();
  std::vector<double> inv(static_cast<size_t>(hd / 2));
  for (int64_t j = 0; j < hd / 2; ++j) inv[j] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * j) / hd);
  if (rope_scaling.type == "linear") {
    for (auto& f : inv) f /= rope_scaling.factor;
  } else if (rope_scaling.type == "llama3") {
    // transformers _compute_llama3_parameters: wavelengths longer than old_len / low_freq_factor
    // are divided by factor, shorter than old_len / high_freq_factor kept, a linear ramp between
    const auto& s = rope_scaling;
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (!(wavelen < high_wavelen)) {
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

void LlamaConfig::CheckSequenceLength(int64_t seq_len, const std::string& what) const {
  if (sliding_window > 0 && seq_len > sliding_window)
    throw Error(fmt::format("{} are up to {} tokens long but the model's sliding_window is {}: its attention "
                            "would see only the last {} tokens, which is not implemented",
                            what, seq_len, sliding_window, sliding_window),
                fmt::format("use sequences of at most {} tokens (shard_data --max-len), or a model without a "
                            "sliding window",
                            sliding_window));
}

int64_t LlamaConfig::NumParams() const {
  const int64_t d = hidden_size, hd = head_dim(), h = num_attention_heads, kv = num_key_value_heads;
  const int64_t attn = d * h * hd          // q_proj [H*hd, D]
                       + 2 * d * kv * hd   // k_proj, v_proj [KV*hd, D]
                       + h * hd * d        // o_proj [D, H*hd]
                       + (qkv_bias ? (h + 2 * kv) * hd : 0);  // q, k, v biases
  const int64_t mlp = 3 * d * intermediate_size;  // gate, up [I, D]; down [D, I]
  const int64_t per_layer = attn + mlp + 2 * d;  // + input / post-attention RMSNorm weights
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
  if (explicit_head_dim < 0)
    throw Error(fmt::format("{}: \"head_dim\" must be positive, got {}", source, explicit_head_dim), "fix config.json");
  if (explicit_head_dim == 0 && hidden_size % num_attention_heads != 0)
    throw Error(fmt::format("{}: hidden_size {} is not divisible by num_attention_heads {}", source, hidden_size,
                            num_attention_heads),
                "head_dim = hidden_size / num_attention_heads must be a whole number (or give head_dim)");
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(fmt::format("{}: num_attention_heads {} is not divisible by num_key_value_heads {}", source,
                            num_attention_heads, num_key_value_heads),
                "grouped-query attention shares each kv head between num_attention_heads / "
                "num_key_value_heads query heads");
  if (head_dim() % 2 != 0)
    throw Error(fmt::format("{}: head_dim {} is odd", source, head_dim()),
                "rotary embeddings rotate pairs of dimensions, so head_dim must be even");
  if (!(rms_norm_eps > 0))
    throw Error(fmt::format("{}: rms_norm_eps must be positive, got {}", source, rms_norm_eps), "fix config.json");
  if (!(rope_theta > 0))
    throw Error(fmt::format("{}: rope_theta must be positive, got {}", source, rope_theta), "fix config.json");
  const auto& r = rope_scaling;
  if (r.type != "default" && !(r.factor > 0))
    throw Error(fmt::format("{}: rope scaling factor must be positive, got {}", source, r.factor), "fix config.json");
  if (r.type == "llama3" && !(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor &&
                              r.original_max_position_embeddings > 0))
    throw Error(fmt::format("{}: llama3 rope scaling needs 0 < low_freq_factor ({}) < high_freq_factor ({}) and a "
                            "positive original_max_position_embeddings ({})",
                            source, r.low_freq_factor, r.high_freq_factor, r.original_max_position_embeddings),
                "fix config.json");
  if (sliding_window < 0)
    throw Error(fmt::format("{}: sliding_window must be positive or null, got {}", source, sliding_window),
                "fix config.json");
}

LlamaConfig LlamaConfigFromJson(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object())
    throw Error(fmt::format("{}: expected a JSON object, found {}", source, TypeName(j)),
                "config.json must be a Hugging Face model config");
  LlamaConfig c;
  if (j.contains("model_type") && !j["model_type"].is_null()) {
    if (!j["model_type"].is_string())
      throw Error(fmt::format("{}: field \"model_type\" must be a string, found {}", source, j["model_type"].dump()),
                  "fix config.json");
    c.model_type = j["model_type"].get<std::string>();
    if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2")
      throw Error(fmt::format("{}: model_type \"{}\" is not supported", source, c.model_type),
                  "supported: llama (LLaMA 1/2/3.x), mistral, qwen2 (Qwen2 / Qwen2.5)");
  }
  // every field is either read below or known not to change the computation
  for (const auto& [key, v] : j.items())
    if (!ReadFields().count(key) && !NeutralFields().count(key))
      throw Error(fmt::format("{}: field \"{}\" (value {}) is not known to this trainer", source, key,
                              v.dump().substr(0, 80)),
                  "a field that may change the computation is refused rather than ignored; the fields read "
                  "are listed in docs/formats.md");
  c.vocab_size = RequiredInt(j, "vocab_size", source);
  c.hidden_size = RequiredInt(j, "hidden_size", source);
  c.intermediate_size = RequiredInt(j, "intermediate_size", source);
  c.num_hidden_layers = RequiredInt(j, "num_hidden_layers", source);
  c.num_attention_heads = RequiredInt(j, "num_attention_heads", source);
  c.num_key_value_heads = c.num_attention_heads;  // HF default: plain multi-head attention
  OptionalInt(j, "num_key_value_heads", source, c.num_key_value_heads);
  OptionalInt(j, "head_dim", source, c.explicit_head_dim);
  OptionalInt(j, "max_position_embeddings", source, c.max_position_embeddings);
  OptionalDouble(j, "rms_norm_eps", source, c.rms_norm_eps);
  OptionalBool(j, "tie_word_embeddings", source, c.tie_word_embeddings);
  OptionalTokenId(j, "bos_token_id", source, c.bos_token_id);
  OptionalTokenId(j, "eos_token_id", source, c.eos_token_id);
  for (const char* f : {"torch_dtype", "dtype"})  // transformers 5 writes "dtype"
    if (j.contains(f) && !j[f].is_null()) {
      if (!j[f].is_string())
        throw Error(fmt::format("{}: field \"{}\" must be a string, found {}", source, f, j[f].dump()),
                    "e.g. \"float16\", \"bfloat16\" or \"float32\"");
      c.torch_dtype = j[f].get<std::string>();
    }

  // rotary embeddings: 4.x top-level rope_theta / rope_scaling, 5.x rope_parameters; where a
  // config holds both, they must agree
  bool have_theta = false;
  if (j.contains("rope_theta") && !j["rope_theta"].is_null()) {
    OptionalDouble(j, "rope_theta", source, c.rope_theta);
    have_theta = true;
  }
  bool have_scaling = false;
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    double t = c.rope_theta;
    c.rope_scaling = ParseRope(j["rope_scaling"], "rope_scaling", source, &t);
    have_scaling = true;
    if (t != c.rope_theta) {
      if (have_theta)
        throw Error(fmt::format("{}: rope_theta {} and rope_scaling.rope_theta {} differ", source, c.rope_theta, t),
                    "keep one value");
      c.rope_theta = t;
      have_theta = true;
    }
  }
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    double t = c.rope_theta;
    const auto p = ParseRope(j["rope_parameters"], "rope_parameters", source, &t);
    if (have_theta && t != c.rope_theta)
      throw Error(fmt::format("{}: rope_theta {} and rope_parameters.rope_theta {} differ", source, c.rope_theta, t),
                  "keep one value (transformers 5 writes rope_parameters, 4.x the top-level rope_theta)");
    if (have_scaling && !SameRope(p, c.rope_scaling))
      throw Error(fmt::format("{}: rope_scaling {} and rope_parameters {} differ", source, j["rope_scaling"].dump(),
                              j["rope_parameters"].dump()),
                  "keep one of them");
    c.rope_theta = t;
    c.rope_scaling = p;
  }

  // architecture variants this implementation does not compute: refused rather than silently
  // producing different outputs from the original model
  if (j.contains("hidden_act") && !j["hidden_act"].is_null() && j["hidden_act"] != "silu")
    throw Error(fmt::format("{}: hidden_act {} is not supported", source, j["hidden_act"].dump()),
                "LLaMA, Mistral and Qwen2 use \"silu\" (SwiGLU MLP)");
  for (const char* f : {"attention_bias", "mlp_bias", "use_mrope"}) {
    bool on = false;
    OptionalBool(j, f, source, on);
    if (on)
      throw Error(fmt::format("{}: \"{}\": true is not supported", source, f),
                  "implemented: no bias on the projections, except q/k/v for model_type qwen2; plain 1-D rope");
  }
  double dropout = 0;
  OptionalDouble(j, "attention_dropout", source, dropout);
  if (dropout != 0)
    throw Error(fmt::format("{}: attention_dropout {} is not supported", source, dropout),
                "the base model's attention has no dropout here; set it to 0.0");
  if (j.contains("pruned_heads") && !j["pruned_heads"].is_null() && !j["pruned_heads"].empty())
    throw Error(fmt::format("{}: pruned_heads {} is not supported", source, j["pruned_heads"].dump()),
                "a model with pruned heads has other projection shapes");
  c.qkv_bias = c.model_type == "qwen2";

  // attention window: mistral applies sliding_window when it is non-null; qwen2 where
  // layer_types (5.x) names a "sliding_attention" layer, or, without layer_types (4.x), with
  // use_sliding_window (conservatively for every layer, whatever max_window_layers says)
  bool window = c.model_type == "mistral";
  const bool typed = j.contains("layer_types") && !j["layer_types"].is_null();
  if (j.contains("use_sliding_window")) {
    if (c.model_type != "qwen2")
      throw Error(fmt::format("{}: \"use_sliding_window\" is a qwen2 field, not one of model_type {}", source,
                              c.model_type),
                  "fix config.json");
    if (!typed) OptionalBool(j, "use_sliding_window", source, window);
  }
  if (typed) {
    const auto& lt = j["layer_types"];
    if (!lt.is_array())
      throw Error(fmt::format("{}: \"layer_types\" must be a list, found {}", source, lt.dump()), "fix config.json");
    for (const auto& t : lt) {
      if (t == "sliding_attention") window = true;
      else if (t != "full_attention")
        throw Error(fmt::format("{}: layer_types entry {} is not supported", source, t.dump()),
                    "implemented: full_attention (and sliding_attention no shorter than the sequence)");
    }
  }
  if (j.contains("sliding_window") && !j["sliding_window"].is_null() && c.model_type == "llama")
    throw Error(fmt::format("{}: \"sliding_window\" is not a llama field", source), "fix config.json");
  if (window) OptionalInt(j, "sliding_window", source, c.sliding_window);
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
  nlohmann::json j{
      {"architectures", nlohmann::json::array({ArchitectureOf(c.model_type)})},
      {"model_type", c.model_type},
      {"hidden_act", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", c.torch_dtype},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
  };
  const auto& r = c.rope_scaling;
  if (r.type == "linear") j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", r.factor}};
  if (r.type == "llama3")
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position_embeddings", r.original_max_position_embeddings}};
  if (c.model_type != "qwen2") j["attention_bias"] = false;
  if (c.model_type == "mistral")
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  if (c.model_type == "qwen2") {
    j["use_sliding_window"] = c.sliding_window > 0;
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  }
  return j;
}

}  // namespace more
