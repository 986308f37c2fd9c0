// Export of trained adapters, and per-task merging into the base weights.
//
// <out>/adapters.safetensors   every adapter tensor, full, fp32: "layers.<i>.<kind>.<A|B|E|gate_w|gate_b>"
// <out>/adapter_config.json    {"format_version": 2, "adapter_record": {the run's record,
//                               adapter/adapter_record.h}, "task_ranks": {module: [r_t per task]},
//                               "base_model": {...}}
// The record is the checkpoint's (ckpt/run_record.h), never re-derived from a config: an export
// computes exactly what the trainer computed (|T| of a transfer run is its source's).
// Merging task t: W_t = W0 + dW_t for every adapted module (dW_t = MoreAdapter::MergedDelta,
// with exactly the forward's scaling and truncation to r_t ranks), written as a complete
// Hugging Face LLaMA directory (config.json, tokenizer.model, model.safetensors) that loads as a
// plain model and gives the adapter model's outputs for task t.
#pragma once
#include <string>
#include <vector>

#include "more/adapter/adapter_record.h"
#include "more/adapter/adapter_set.h"
#include "more/config/config.h"
#include "more/model/hf_config.h"

namespace more {

void ExportAdapters(const std::string& out_dir, const AdapterSet& adapters, const AdapterRecord& record,
                    const LlamaConfig& model);

// Rebuilds the adapters of an export directory (single process, full model) for merging/tests.
struct LoadedExport {
  nlohmann::json config;
  AdapterRecord record;  // what the adapters compute (built from it)
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

// Index of `task` in the export; an error lists the tasks it holds.
int TaskIndex(const LoadedExport& ex, const std::string& task);

// Writes the merged model for `task` into out_dir (a HF directory). Returns the path.
// Streaming: each base shard is written as the same shard (same file names, index, dtypes),
// tensor by tensor: an adapted weight is read from the memory map, merged in fp32 and rounded
// once to the base dtype; the others are copied byte for byte; each tensor's pages are released
// after use, so resident memory stays at a few tensors. Everything goes into
// "<parent>/.tmp-<name>", renamed onto out_dir at the end: a failure (disk full, missing base,
// a bad tensor) leaves no partial output and no earlier out_dir damaged.
std::string MergeTask(const std::string& export_dir, const std::string& base_model_dir, const std::string& task,
                      const std::string& out_dir);
std::string MergeTask(const LoadedExport& ex, const LlamaConfig& model, const std::string& base_model_dir,
                      const std::string& task, const std::string& out_dir, const std::string& source);

// Writes `task` as a standard Hugging Face PEFT LoRA directory (docs/formats.md):
//   adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r = adapter rank, ONE global
//                              lora_alpha = the run's alpha, rank_pattern {"model.layers.<i>.<mod>": r_t},
//                              alpha_pattern {} (always empty)
//   adapter_model.safetensors  base_model.model.model.layers.<i>.<mod>.lora_A.weight [r_t, d_in]
//                              and .lora_B.weight [d_out, r_t], fp32
// PEFT computes  h = W0 x + (lora_alpha / r_t) B' (A x).  The module's exact factors w (one
// factor s(r_t) alpha/r, or per-component factors [r_t] for per_component scaling and soft
// selection) are folded into B: B' = B diag(w) r_t / lora_alpha (float64, rounded once), so a
// loader that ignores alpha_pattern (or reads one global alpha / r_t) still gets the trained
// function; one that ignores rank_pattern fails on the shapes instead. uniform = true: every
// module zero-padded to rank r with B' = B diag(w) and lora_alpha = r (scaling 1, no patterns),
// for consumers that ignore rank_pattern.
// Also copies the tokenizer files. Written into a temporary directory renamed at the end.
std::string ExportPeft(const LoadedExport& ex, const LlamaConfig& model, const std::string& base_model_dir,
                       const std::string& task, const std::string& out_dir, bool uniform);

// Copies the tokenizer and generation files of base_dir that HF loaders read (tokenizer.model,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json) and
// writes tokenizer_config.json / generation_config.json when the base has none.
void WriteHfSideFiles(const std::string& base_dir, const LlamaConfig& model, const std::string& out_dir);

}  // namespace more
