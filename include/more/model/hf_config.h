// LLaMA-family architecture hyper-parameters, read from a Hugging Face config.json (torch-free).
// One decoder covers model_type "llama" (LLaMA 1/2/3.x), "mistral" (without a sliding window
// shorter than the sequence) and "qwen2" (Qwen2 / Qwen2.5: a bias on q, k and v). Fields follow
// the HF names; num_key_value_heads < num_attention_heads means grouped-query attention.
// Both layouts transformers writes are read: 4.x (top-level rope_theta and rope_scaling) and 5.x
// (rope_parameters). A field that changes the computation and is not implemented is refused
// with an error naming it; a field this reader does not know is refused too (docs/formats.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace more {

// Rotary embedding frequencies (transformers' ROPE_INIT_FUNCTIONS): "default", "linear"
// (positions divided by factor) and "llama3" (Llama 3.1: long wavelengths divided by factor,
// a smooth ramp between low_freq_factor and high_freq_factor). Other types are refused.
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;   // llama3
  int64_t original_max_position_embeddings = 0;           // llama3
};

struct LlamaConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t explicit_head_dim = 0;  // config "head_dim"; 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool qkv_bias = false;  // q_proj, k_proj, v_proj carry a bias (qwen2); o_proj never does
  // Attention window (mistral "sliding_window", qwen2 with use_sliding_window); 0: none. Equal to
  // full causal attention for sequences up to this length; longer ones are refused.
  int64_t sliding_window = 0;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float16";
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  int64_t head_dim() const { return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / num_attention_heads; }
  // The rotary inverse frequencies inv_freq[j], j < head_dim/2, in float64 (transformers'
  // _compute_default / _linear / _llama3_parameters).
  std::vector<double> RopeInvFreq() const;
  // Base (frozen) parameter count, for FLOP and memory estimates.
  int64_t NumParams() const;
  // Throws more::Error naming `source` and the field when values are inconsistent
  // (hidden % heads without head_dim, heads % kv_heads, non-positive sizes, rope parameters).
  void Validate(const std::string& source) const;
  // Throws when sequences of `seq_len` tokens would attend differently from full causal
  // attention (a sliding window shorter than them); `what` names where the length comes from.
  void CheckSequenceLength(int64_t seq_len, const std::string& what) const;
};

// Reads `<dir>/config.json` (or a path to a json file). Missing optional fields take the
// defaults above (kv heads default to attention heads, as in HF).
LlamaConfig LoadLlamaConfig(const std::string& dir_or_file);
// The config as transformers 4.x writes it (top-level rope_theta / rope_scaling), with the
// architectures entry of its model_type.
nlohmann::json LlamaConfigToJson(const LlamaConfig& c);
LlamaConfig LlamaConfigFromJson(const nlohmann::json& j, const std::string& source);

}  // namespace more
