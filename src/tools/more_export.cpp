// more_export: adapters of a checkpoint -> export directory, per-task merged models and
// per-task Hugging Face PEFT LoRA adapters.
//   more_export --checkpoint RUN/checkpoints[/latest|/step-00000200] --out EXPORT
//               [--merge TASKS|all] [--peft TASKS|all] [--peft-uniform] [--model HF_DIR]
// The base model comes from the checkpoint's resolved config (model.path) unless --model is given.
// A single-process tool: no MPI.
#include <filesystem>
#include <iostream>

#include "more/ckpt/checkpoint.h"
#include "more/ckpt/export.h"
#include "more/core/error.h"
#include "more/core/log.h"
#include "more/core/main_guard.h"
#include "more/core/strings.h"
#include "more/model/llama.h"

namespace {

constexpr const char* kUsage = R"(usage: more_export --checkpoint CKPT --out DIR [--merge TASKS|all] [--peft TASKS|all]
                   [--peft-uniform] [--model HF_DIR]
       more_export --export DIR --model HF_DIR [--out DIR] [--merge TASKS|all] [--peft TASKS|all] [--peft-uniform]

  --checkpoint CKPT  a checkpoint directory (step-N), the checkpoints root, or its 'latest' file
  --out DIR          writes DIR/adapters.safetensors and DIR/adapter_config.json (all tasks)
  --export DIR       start from an existing export directory instead of a checkpoint
                     (outputs go to --out, default DIR; --model is required)
  --merge TASKS|all  comma-separated tasks: DIR/merged/<task>/, a complete Hugging Face LLaMA
                     (base weights + that task's adapter, same dtype and shard layout as the base)
  --peft TASKS|all   DIR/peft/<task>/: a standard PEFT LoRA adapter (adapter_config.json with
                     rank_pattern, scaling folded into lora_B so alpha_pattern is empty,
                     adapter_model.safetensors) for PeftModel.from_pretrained
  --peft-uniform     with --peft, also DIR/peft-uniform/<task>/: zero-padded to the full rank r,
                     no rank_pattern (for tools that ignore rank_pattern)
  --model HF_DIR     the base model (default: the checkpoint's model.path)
  --help             this text
See docs/formats.md.
)";

std::vector<std::string> Tasks(const std::string& spec, const std::vector<std::string>& all) {
  return spec == "all" ? all : more::SplitList(spec);
}

}  // namespace

int main(int argc, char** argv) {
  return more::RunTool(argc, argv, [](int argc, char** argv) {
    std::string ckpt, out, merge, peft, model_dir, from_export;
    bool peft_uniform = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw more::Error(a + " needs a value", "see more_export --help");
        return argv[++i];
      };
      if (a == "--checkpoint") ckpt = next();
      else if (a == "--out") out = next();
      else if (a == "--export") from_export = next();
      else if (a == "--merge") merge = next();
      else if (a == "--peft") peft = next();
      else if (a == "--peft-uniform") peft_uniform = true;
      else if (a == "--model") model_dir = next();
      else if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else throw more::Error("unexpected argument '" + a + "'", "see more_export --help");
    }
    if (!from_export.empty()) {
      if (!ckpt.empty()) throw more::Error("give --checkpoint or --export, not both");
      if (model_dir.empty()) throw more::Error("--export needs --model HF_DIR (the base model)");
      if (out.empty()) out = from_export;
    } else if (ckpt.empty() || out.empty()) {
      throw more::Error("--checkpoint and --out are required", "see more_export --help");
    }
    if (peft_uniform && peft.empty()) throw more::Error("--peft-uniform needs --peft TASKS|all");
    more::InitLogging(0, 1);
    std::string base = model_dir, source = out;
    if (from_export.empty()) {
      const auto dir = more::CheckpointManager::Resolve(ckpt);
      base = more::ExportCheckpoint(dir, out, model_dir).model_path;
      spdlog::info("exported the adapters of {} to {}", dir, out);
    } else {
      source = from_export;
    }
    if (merge.empty() && peft.empty()) return 0;
    if (!std::filesystem::is_directory(base))
      throw more::Error("base model '" + base + "' does not exist (or is not a directory)", "check --model");
    const auto model = more::LoadLlamaConfig(base);
    const auto ex = more::LoadExport(source, model);
    // check every name before writing anything
    const auto merge_tasks = Tasks(merge, ex.tasks), peft_tasks = Tasks(peft, ex.tasks);
    for (const auto& t : merge_tasks) more::TaskIndex(ex, t);
    for (const auto& t : peft_tasks) more::TaskIndex(ex, t);
    for (const auto& t : peft_tasks) {
      spdlog::info("PEFT adapter for task '{}' written to {}",
                   t, more::ExportPeft(ex, model, base, t, out + "/peft/" + t, false));
      if (peft_uniform)
        spdlog::info("uniform-rank PEFT adapter for task '{}' written to {}", t,
                     more::ExportPeft(ex, model, base, t, out + "/peft-uniform/" + t, true));
    }
    for (const auto& t : merge_tasks)
      spdlog::info("merged model for task '{}' written to {}", t,
                   more::MergeTask(ex, model, base, t, out + "/merged/" + t, source));
    return 0;
  });
}
