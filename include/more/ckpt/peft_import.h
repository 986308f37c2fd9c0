// Start training from an existing Hugging Face PEFT LoRA adapter (config key adapter.init_from).
//
// <dir>/adapter_config.json (peft_type LORA) and <dir>/adapter_model.safetensors with keys
// "base_model.model.model.layers.<i>.<self_attn|mlp>.<q|k|v|o|gate|up|down>_proj.lora_A.weight"
// [r_p, d_in] and ".lora_B.weight" [d_out, r_p] (r_p may differ per module: rank_pattern).
// For every module of this stage found in the file:
//   A[:r_p, :] = A_p        B[:, :r_p] = B_p * c_p / (alpha / r)
// where c_p is PEFT's scaling of that module (alpha_p / r_p from lora_alpha / alpha_pattern and
// r / rank_pattern) and alpha / r this run's base scale: a LoRA-method run of rank r >= r_p starts
// with exactly the PEFT adapter's output (the remaining ranks keep their initial A and zero B, so
// they add nothing). Under MoRE the chosen rank's factor s(r_t) multiplies that, as for any
// adapter. Everything else (task embeddings, gates) stays as initialised.
// Errors (naming the file and tensor): missing files, peft_type not LORA, DoRA, bias, fan_in_fan_out,
// r_p > r, shapes not matching the model, a module outside adapter.targets or the model's layers.
// Modules of adapter.targets absent from the file keep their initialisation (logged).
#pragma once
#include <string>

#include "more/adapter/adapter_set.h"
#include "more/model/hf_config.h"

namespace more {

// Returns the number of modules of `adapters` (this stage) that were loaded.
int ImportPeftLora(const std::string& dir, const LlamaConfig& model, const std::vector<std::string>& targets,
                   AdapterSet& adapters);

}  // namespace more
