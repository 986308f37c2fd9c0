// LLaMA architecture hyper-parameters, read from a Hugging Face config.json (torch-free).
// Fields follow the HF names; num_key_value_heads < num_attention_heads means grouped-query
// attention (LLaMA2-70B: 64 heads, 8 kv heads).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace more {

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // bias on the q, k, v projections (Qwen2); counted by NumParams
  std::string torch_dtype = "float16";
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Base (frozen) parameter count, for FLOP and memory estimates.
  int64_t NumParams() const;
  // Throws more::Error naming `source` and the field when values are inconsistent
  // (hidden % heads, heads % kv_heads, non-positive sizes).
  void Validate(const std::string& source) const;
};

// Reads `<dir>/config.json` (or a path to a json file). Missing optional fields take the
// defaults above (kv heads default to attention heads, as in HF).
LlamaConfig LoadLlamaConfig(const std::string& dir_or_file);
nlohmann::json LlamaConfigToJson(const LlamaConfig& c);
LlamaConfig LlamaConfigFromJson(const nlohmann::json& j, const std::string& source);

}  // namespace more
