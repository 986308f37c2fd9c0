// Export of trained adapters, and per-task merging into the base weights.
//
// <out>/adapters.safetensors   every adapter tensor, full, fp32: "layers.<i>.<kind>.<A|B|E|gate_w|gate_b>"
// <out>/adapter_config.json    {"format_version", "method", "rank", "alpha", "scaling",
//                               "selection", "targets", "tasks": [...],
//                               "task_ranks": {module: [r_t per task]}, "base_model": {...}}
// Merging task t: W_t = W0 + dW_t for every adapted module (dW_t = MoreAdapter::MergedDelta,
// with exactly the forward's scaling and truncation to r_t ranks), written as a complete
// Hugging Face LLaMA directory (config.json, tokenizer.model, model.safetensors) that loads as a
// plain model and gives the adapter model's outputs for task t.
#pragma once
#include <string>
#include <vector>

#include "more/adapter/adapter_set.h"
#include "more/config/config.h"
#include "more/model/hf_config.h"

namespace more {

void ExportAdapters(const std::string& out_dir, const AdapterSet& adapters, const std::vector<std::string>& tasks,
                    const Config& cfg, const LlamaConfig& model);

// Rebuilds the adapters of an export directory (single process, full model) for merging/tests.
struct LoadedExport {
  nlohmann::json config;
  std::unique_ptr<AdapterSet> adapters;
  std::vector<std::string> tasks;
};
LoadedExport LoadExport(const std::string& export_dir, const LlamaConfig& model);

// Exports a checkpoint directory (all pipeline stages' adapters) to out_dir. The base model is
// the checkpoint's model.path unless model_dir is given.
struct ExportedCheckpoint {
  std::vector<std::string> tasks;
  std::string model_path;  // the base model used (for merging)
};
ExportedCheckpoint ExportCheckpoint(const std::string& ckpt_dir, const std::string& out_dir,
                                    const std::string& model_dir = "");

// Writes the merged model for `task` into out_dir (a HF directory). Returns the path.
std::string MergeTask(const std::string& export_dir, const std::string& base_model_dir, const std::string& task,
                      const std::string& out_dir);

}  // namespace more
