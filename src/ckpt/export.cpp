#include "more/ckpt/export.h"

#include <filesystem>

#include "more/ckpt/checkpoint.h"
#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/model/llama.h"
#include "more/model/weights.h"

namespace fs = std::filesystem;

namespace more {

inline constexpr int kExportFormatVersion = 1;

void ExportAdapters(const std::string& out_dir, const AdapterSet& adapters, const std::vector<std::string>& tasks,
                    const Config& cfg, const LlamaConfig& model) {
  fs::create_directories(out_dir);
  SaveTensorFile(out_dir + "/adapters.safetensors", adapters.NamedTensors(),
                 {{"format_version", std::to_string(kExportFormatVersion)}});
  MORE_CHECK(adapters.size() > 0, "export: no adapters");
  // settings from the adapters themselves (the config could disagree with what was built)
  const auto& o = adapters.adapters().front()->options();
  nlohmann::json j = {{"format_version", kExportFormatVersion},
                      {"method", o.more ? "more" : "lora"},
                      {"rank", o.rank},
                      {"alpha", o.alpha},
                      {"scaling", o.scaling},
                      {"selection", o.soft ? "soft" : "ste"},
                      {"scale_tasks", o.scale_tasks > 0 ? o.scale_tasks : o.num_tasks},  // |T| of s(r_t)
                      {"experts", adapters.adapters().front()->experts()},
                      {"gate_input", o.shared_gate_input ? "shared" : "task"},
                      {"targets", cfg.TargetModules()},
                      {"tasks", tasks},
                      {"task_ranks", adapters.TaskRankMap(static_cast<int>(tasks.size()))},
                      {"base_model", LlamaConfigToJson(model)}};
  WriteFileAtomic(out_dir + "/adapter_config.json", j.dump(2));
}

ExportedCheckpoint ExportCheckpoint(const std::string& ckpt_dir, const std::string& out_dir,
                                    const std::string& model_dir) {
  auto loaded = CheckpointManager::Load(ckpt_dir);
  auto cfg = ConfigFromJson(loaded.state.at("config"));
  if (!model_dir.empty()) cfg.model.path = model_dir;
  auto model = LoadLlamaConfig(cfg.model.path);
  auto tasks = loaded.state.at("task_names").get<std::vector<std::string>>();
  auto grid = ProcessGrid::Single();
  auto adapters = BuildAdapters(model, AdapterOptionsFromConfig(cfg, tasks),
                                cfg.TargetModules(), *grid);
  adapters->LoadNamed(loaded.adapters, ckpt_dir);
  ExportAdapters(out_dir, *adapters, tasks, cfg, model);
  return {tasks, cfg.model.path};
}

LoadedExport LoadExport(const std::string& export_dir, const LlamaConfig& model) {
  LoadedExport out;
  const auto cfg_path = export_dir + "/adapter_config.json";
  try {
    out.config = nlohmann::json::parse(ReadFileToString(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not valid JSON: {}", cfg_path, e.what()));
  }
  if (out.config.value("format_version", -1) != kExportFormatVersion)
    throw Error(fmt::format("'{}': unknown export format version {}", cfg_path, out.config.value("format_version", -1)));
  out.tasks = out.config.at("tasks").get<std::vector<std::string>>();
  AdapterOptions ao;
  ao.more = out.config.at("method") == "more";
  ao.rank = out.config.at("rank").get<int64_t>();
  ao.alpha = out.config.at("alpha").get<double>();
  ao.scaling = out.config.at("scaling").get<std::string>();
  ao.soft = out.config.at("selection") == "soft";
  ao.num_tasks = static_cast<int64_t>(out.tasks.size());
  ao.scale_tasks = out.config.value("scale_tasks", ao.num_tasks);  // exports before it was stored: all tasks
  if (out.config.contains("experts")) ao.experts = out.config.at("experts").get<std::vector<int64_t>>();
  ao.shared_gate_input = out.config.value("gate_input", std::string("task")) == "shared";
  auto grid = ProcessGrid::Single();
  out.adapters = BuildAdapters(model, ao, out.config.at("targets").get<std::vector<std::string>>(), *grid);
  out.adapters->LoadNamed(LoadTensorFile(export_dir + "/adapters.safetensors"), export_dir);
  // the stored task->rank map must be what the gate now selects (it is part of the contract)
  if (out.adapters->TaskRankMap(static_cast<int>(out.tasks.size())) != out.config.at("task_ranks"))
    throw Error(fmt::format("'{}': the task->rank map does not match the stored gates", export_dir),
                "the export is inconsistent; re-export from the checkpoint");
  return out;
}

std::string MergeTask(const std::string& export_dir, const std::string& base_dir, const std::string& task,
                      const std::string& out_dir) {
  auto model = LoadLlamaConfig(base_dir);
  auto ex = LoadExport(export_dir, model);
  auto it = std::find(ex.tasks.begin(), ex.tasks.end(), task);
  if (it == ex.tasks.end())
    throw Error(fmt::format("unknown task '{}': the export holds [{}]", task, fmt::join(ex.tasks, ", ")));
  const int t = static_cast<int>(it - ex.tasks.begin());
  SafetensorsCollection st(base_dir);
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, const MoreAdapter*> by_hf;
  for (const auto& a : ex.adapters->adapters()) {
    auto dot = a->name().rfind('.');
    auto layer = a->name().substr(0, dot);  // "layers.<i>"
    by_hf["model." + layer + "." + HfModuleName(a->name().substr(dot + 1)) + ".weight"] = a.get();
  }
  for (const auto& name : st.Names()) {
    const auto& info = st.FileFor(name).Info(name);
    auto w = LoadTensorSlice(st, name, info.shape, -1, 0, 1, TorchDType(info.dtype), torch::kCPU);
    auto ad = by_hf.find(name);
    if (ad != by_hf.end())
      w = (w.to(torch::kFloat32) + ad->second->MergedDelta(t)).to(w.scalar_type());
    tensors[name] = w;
  }
  fs::create_directories(out_dir);
  SaveTensorFile(out_dir + "/model.safetensors", tensors,
                 {{"format", "pt"}, {"merged_task", task}, {"source", export_dir}});
  fs::copy_file(base_dir + "/config.json", out_dir + "/config.json", fs::copy_options::overwrite_existing);
  if (fs::exists(base_dir + "/tokenizer.model"))
    fs::copy_file(base_dir + "/tokenizer.model", out_dir + "/tokenizer.model", fs::copy_options::overwrite_existing);
  return out_dir;
}

}  // namespace more
