// A Hugging Face PEFT adapter_config.json, read and checked without torch (used by
// ImportPeftLora, more/ckpt/peft_import.h; fuzzed by fuzz/fuzz_peft_config.cpp).
//
// Only plain LoRA can be imported. Refused, each with a message naming the field: peft_type other
// than LORA; use_dora, fan_in_fan_out, lora_bias true; bias other than "none"; modules_to_save
// (whole modules trained beside the LoRA, which the import would drop); r not a positive integer;
// lora_alpha not a finite number; rank_pattern values not positive integers, alpha_pattern values
// not finite numbers; a field of the wrong JSON type.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace more {

struct PeftLoraConfig {
  double r = 0;           // default rank
  double lora_alpha = 0;  // default alpha
  bool use_rslora = false;
  nlohmann::json rank_pattern = nlohmann::json::object();   // {pattern: rank}
  nlohmann::json alpha_pattern = nlohmann::json::object();  // {pattern: alpha}
};

// `text` is the file's contents, `path` names it in errors.
PeftLoraConfig ParsePeftLoraConfig(const std::string& text, const std::string& path);

}  // namespace more
