// more_plan: per-rank memory plan of a tp x pp x dp layout before launching more_train
// (torch-free; formulas in include/more/dist/memory_plan.h). It loads the configuration the way
// more_train does (TOML + --section.key=value overrides) and checks the layout with the
// trainer's own Config::ValidateAgainstModel, so a layout it accepts is one the trainer accepts.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "more/core/main_guard.h"
#include "more/config/config.h"
#include "more/core/cpu_features.h"
#include "more/core/error.h"
#include "more/dist/memory_plan.h"
#include "more/model/hf_config.h"

namespace {

constexpr const char* kUsage = R"(more_plan: per-rank memory of a tp x pp x dp layout (no torch, no MPI needed)

usage: more_plan [--config FILE.toml] [--model DIR | --preset NAME] --world N [options] [--section.key=value ...]

  --config FILE.toml   run configuration, as for more_train (model.path / data.train may be empty here)
  --model DIR          Hugging Face model directory (config.json) or config.json path; default model.path
  --preset NAME        llama2-7b | llama2-13b | llama2-70b | llama3.1-8b | llama3.1-70b |
                       mistral-7b (v0.3) | qwen2.5-7b (Hugging Face config values)
  --world N            number of ranks (GPUs) of the job
  --seq-len L          padded sequence length (the shards' max length), default 128
  --base-dtype D       bf16 | f32; default from model.dtype, auto as more_train resolves it: bf16
                       with model.device=cuda; with cpu, bf16 where this CPU has native bf16
                       (AVX512-BF16 / AMX-BF16; MORE_CPU_BF16=0/1 forces it), else f32
  --gpu-gb G           memory per GPU in GiB, default 80 (10% of it is kept back)
  --tasks T            number of tasks (rows of each task embedding); default: the names in
                       data.tasks when set, else 8
  --section.key=value  any more_train option, e.g. --parallel.tp=8 --parallel.pp=2 --train.micro_batch=1
  --help               this text

layout: world = tp x pp x dp, rank = tp_rank + tp*(pp_rank + pp*dp_rank) (tp fastest)
)";

int64_t ParseInt(const std::string& flag, const std::string& v) {
  size_t pos = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos == 0 || pos != v.size()) throw more::Error(fmt::format("{}: '{}' is not an integer", flag, v));
  return x;
}

double ParseDouble(const std::string& flag, const std::string& v) {
  size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos == 0 || pos != v.size()) throw more::Error(fmt::format("{}: '{}' is not a number", flag, v));
  return x;
}

int Run(int argc, char** argv) {
  std::string config_path, model_dir, preset, base_dtype;
  int64_t world = 0;
  bool tasks_given = false;
  more::PlanOptions opt;
  std::vector<std::string> overrides;
  const std::vector<std::string> flags = {"--config", "--model", "--preset", "--world", "--seq-len",
                                          "--base-dtype", "--gpu-gb", "--tasks"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    std::string flag = a, value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    if (std::find(flags.begin(), flags.end(), flag) != flags.end()) {
      if (!has_value) {
        if (i + 1 >= argc) throw more::Error(fmt::format("{} needs a value", flag), "see more_plan --help");
        value = argv[++i];
      }
      if (flag == "--config") config_path = value;
      else if (flag == "--model") model_dir = value;
      else if (flag == "--preset") preset = value;
      else if (flag == "--world") world = ParseInt(flag, value);
      else if (flag == "--seq-len") opt.seq_len = ParseInt(flag, value);
      else if (flag == "--base-dtype") base_dtype = value;
      else if (flag == "--gpu-gb") opt.gpu_gib = ParseDouble(flag, value);
      else if (flag == "--tasks") {
        opt.num_tasks = ParseInt(flag, value);
        tasks_given = true;
      }
    } else if (a.rfind("--", 0) == 0 && flag.find('.') != std::string::npos) {
      overrides.push_back(a.substr(2));  // --section.key=value, as more_train takes it
    } else {
      throw more::Error(fmt::format("unexpected argument '{}'", a), "see more_plan --help");
    }
  }

  auto cfg = more::LoadConfig(config_path, overrides);
  {  // the trainer's checks, without requiring the model and data paths the planner does not read
    auto check = cfg;
    if (check.model.path.empty()) check.model.path = "(planner)";
    if (check.data.train.empty()) check.data.train = "(planner)";
    check.Validate();
  }
  if (!tasks_given && !cfg.data.tasks.empty()) {  // a task subset: count its names
    opt.num_tasks = 0;
    std::string item;
    for (size_t i = 0; i <= cfg.data.tasks.size(); ++i) {
      if (i == cfg.data.tasks.size() || cfg.data.tasks[i] == ',') {
        if (!item.empty()) ++opt.num_tasks;
        item.clear();
      } else {
        item += cfg.data.tasks[i];
      }
    }
  }
  if (world < 1) throw more::Error("--world N (the number of ranks) is required and must be >= 1", "e.g. --world 16");
  if (world > (1 << 30)) throw more::Error(fmt::format("--world {} is too large", world));
  if (opt.seq_len < 1) throw more::Error(fmt::format("--seq-len must be >= 1, got {}", opt.seq_len));
  if (opt.num_tasks < 1) throw more::Error(fmt::format("--tasks must be >= 1, got {}", opt.num_tasks));
  if (!(opt.gpu_gib > 0)) throw more::Error(fmt::format("--gpu-gb must be > 0, got {}", opt.gpu_gib));

  if (!model_dir.empty() && !preset.empty()) throw more::Error("give either --model or --preset, not both");
  more::LlamaConfig model;
  std::string model_name;
  if (!preset.empty()) {
    model = more::LlamaPreset(preset);
    model_name = preset;
  } else {
    if (model_dir.empty()) model_dir = cfg.model.path;
    if (model_dir.empty())
      throw more::Error("no model: give --model DIR, --preset NAME or model.path in the config",
                        fmt::format("presets: {}", fmt::join(more::LlamaPresetNames(), ", ")));
    model = more::LoadLlamaConfig(model_dir);
    model_name = model_dir;
  }

  if (base_dtype.empty()) {
    if (cfg.model.dtype == "float32") base_dtype = "f32";
    else if (cfg.model.dtype == "bfloat16" || cfg.model.device == "cuda") base_dtype = "bf16";
    else {  // auto on the CPU: more_train's rule (torch-free here: a LibTorch with oneDNN is assumed)
      const auto cpu = more::CpuAutoBf16(/*have_onednn=*/true);
      base_dtype = cpu.bf16 ? "bf16" : "f32";
      std::cerr << "more_plan: model.dtype=auto on the CPU: " << cpu.reason << "\n";
    }
  }
  if (base_dtype == "bf16" || base_dtype == "bfloat16") opt.elem_bytes = 2;
  else if (base_dtype == "f32" || base_dtype == "float32") opt.elem_bytes = 4;
  else throw more::Error(fmt::format("--base-dtype must be bf16 or f32, not '{}'", base_dtype));

  const auto plan = more::PlanMemory(cfg, model, static_cast<int>(world), opt);
  std::cout << more::FormatPlan(plan, model_name);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return more::RunTool(argc, argv, Run); }
