#include "more/ckpt/export.h"

#include <filesystem>
#include <set>

#include "more/ckpt/checkpoint.h"
#include "more/ckpt/run_record.h"
#include "more/core/log.h"
#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/model/llama.h"
#include "more/model/weights.h"

namespace fs = std::filesystem;

namespace more {

// Version 2: the adapter record under "adapter_record". Version 1 (flat "method", "rank", ...
// fields; written before the record existed) is still read.
inline constexpr int kExportFormatVersion = 2;

void ExportAdapters(const std::string& out_dir, const AdapterSet& adapters, const AdapterRecord& record,
                    const LlamaConfig& model) {
  MORE_CHECK(adapters.size() > 0, "export: no adapters");
  fs::create_directories(out_dir);
  SaveTensorFile(out_dir + "/adapters.safetensors", adapters.NamedTensors(),
                 {{"format_version", std::to_string(kExportFormatVersion)}});
  nlohmann::json j = {{"format_version", kExportFormatVersion},
                      {"adapter_record", AdapterRecordToJson(record)},
                      {"task_ranks", adapters.TaskRankMap(static_cast<int>(record.tasks.size()))},
                      {"base_model", LlamaConfigToJson(model)}};
  WriteFileAtomic(out_dir + "/adapter_config.json", j.dump(2));
}

ExportedCheckpoint ExportCheckpoint(const std::string& ckpt_dir, const std::string& out_dir,
                                    const std::string& model_dir) {
  auto loaded = CheckpointManager::Load(ckpt_dir);
  const auto record = CheckpointAdapterRecord(loaded.state, ckpt_dir);
  // the base model: the checkpoint's model.path (a location, not an adapter setting) unless given
  std::string base = model_dir;
  if (base.empty()) {
    const auto& c = loaded.state.at("config");
    base = c.contains("model") && c["model"].contains("path") ? c["model"]["path"].get<std::string>() : "";
  }
  if (!fs::is_directory(base))
    throw Error(fmt::format("base model '{}' does not exist (or is not a directory)", base),
                model_dir.empty() ? "the checkpoint's model.path is gone: pass --model HF_DIR" : "check --model");
  auto model = LoadLlamaConfig(base);
  auto grid = ProcessGrid::Single();
  auto adapters = BuildAdapters(model, record.options, record.targets, *grid);
  adapters->LoadNamed(loaded.adapters, ckpt_dir);
  ExportAdapters(out_dir, *adapters, record, model);
  return {record.tasks, base};
}

namespace {

// The record of a version-1 export (flat fields; no trained_tasks, tau or task-embedding init:
// none of them changes what an export computes).
AdapterRecord RecordOfV1Export(const nlohmann::json& c, const std::string& where) {
  AdapterRecord r;
  try {
    r.tasks = c.at("tasks").get<std::vector<std::string>>();
    r.targets = c.at("targets").get<std::vector<std::string>>();
    auto& ao = r.options;
    ao.more = c.at("method") == "more";
    ao.rank = c.at("rank").get<int64_t>();
    ao.alpha = c.at("alpha").get<double>();
    ao.scaling = c.at("scaling").get<std::string>();
    ao.soft = c.at("selection") == "soft";
    ao.num_tasks = static_cast<int64_t>(r.tasks.size());
    ao.scale_tasks = c.value("scale_tasks", ao.num_tasks);  // exports before it was stored: all tasks
    if (c.contains("experts")) ao.experts = c.at("experts").get<std::vector<int64_t>>();
    ao.shared_gate_input = c.value("gate_input", std::string("task")) == "shared";
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}': a version-1 export config with a missing or malformed field ({})", where, e.what()),
                "re-export it from the checkpoint");
  }
  // a round trip through the record's own checks (ranges, names)
  return AdapterRecordFromJson(AdapterRecordToJson(r), where);
}

}  // namespace

LoadedExport LoadExport(const std::string& export_dir, const LlamaConfig& model) {
  LoadedExport out;
  const auto cfg_path = export_dir + "/adapter_config.json";
  try {
    out.config = nlohmann::json::parse(ReadFileToString(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not valid JSON: {}", cfg_path, e.what()));
  }
  const int version = out.config.is_object() ? out.config.value("format_version", -1) : -1;
  if (version == kExportFormatVersion) {
    if (!out.config.contains("adapter_record"))
      throw Error(fmt::format("'{}' has no adapter_record", cfg_path), "re-export it from the checkpoint");
    out.record = AdapterRecordFromJson(out.config.at("adapter_record"), cfg_path);
  } else if (version == 1) {
    out.record = RecordOfV1Export(out.config, cfg_path);
    spdlog::info("'{}' is a version-1 export: adapter record read from its flat fields (|T| = {})", cfg_path,
                 out.record.scale_tasks());
  } else {
    throw Error(fmt::format("'{}': unknown export format version {}", cfg_path, version),
                fmt::format("this build reads versions 1 and {}", kExportFormatVersion));
  }
  out.tasks = out.record.tasks;
  if (!out.config.contains("task_ranks"))
    throw Error(fmt::format("'{}' has no task_ranks", cfg_path), "re-export it from the checkpoint");
  auto grid = ProcessGrid::Single();
  out.adapters = BuildAdapters(model, out.record.options, out.record.targets, *grid);
  out.adapters->LoadNamed(LoadTensorFile(export_dir + "/adapters.safetensors"), export_dir);
  // the stored task->rank map must be what the gate now selects (it is part of the contract)
  if (out.adapters->TaskRankMap(static_cast<int>(out.tasks.size())) != out.config.at("task_ranks"))
    throw Error(fmt::format("'{}': the task->rank map does not match the stored gates", export_dir),
                "the export is inconsistent; re-export from the checkpoint");
  return out;
}

namespace {

// Removes a directory being written unless Commit() moved it into place.
class TmpDirGuard {
 public:
  explicit TmpDirGuard(std::string dir) : dir_(std::move(dir)) {}
  ~TmpDirGuard() {
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  // Renames the finished directory onto `dest` (an earlier `dest` is replaced only now).
  void Commit(const std::string& dest) {
    const auto parent = fs::path(dest).parent_path();
    if (fs::exists(dest)) {
      const auto old = (parent / (".old-" + fs::path(dest).filename().string())).string();
      fs::remove_all(old);
      fs::rename(dest, old);
      fs::rename(dir_, dest);
      fs::remove_all(old);
    } else {
      fs::rename(dir_, dest);
    }
    FsyncDirectory(parent.empty() ? "." : parent.string());
    dir_.clear();
  }

 private:
  std::string dir_;
};

// A fresh, empty temporary directory next to `dest` (same file system, so the final rename is
// atomic): "<parent>/.tmp-<name>". A leftover of a killed run is removed first.
std::string TmpDirFor(const std::string& dest) {
  const auto parent = fs::path(dest).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  const auto tmp = (parent / (".tmp-" + fs::path(dest).filename().string())).string();
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp;
}

void CheckBaseDir(const std::string& base_dir) {
  if (!fs::is_directory(base_dir))
    throw Error(fmt::format("base model '{}' does not exist (or is not a directory)", base_dir),
                "pass --model HF_DIR; by default the checkpoint's model.path is used");
}

void CopyFile(const std::string& from, const std::string& to) { WriteFileAtomic(to, ReadFileToString(from)); }

std::string HumanBytes(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f} GB", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.1f} MB", n / 1e6);
  return fmt::format("{} kB", (n + 999) / 1000);
}

std::string AbsPath(const std::string& p) {
  std::error_code ec;
  auto a = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? p : a.string();
}

}  // namespace

void WriteHfSideFiles(const std::string& base_dir, const LlamaConfig& model, const std::string& out_dir) {
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json", "generation_config.json"}) {
    if (fs::exists(base_dir + "/" + f)) CopyFile(base_dir + "/" + f, out_dir + "/" + f);
  }
  const bool has_sp = fs::exists(base_dir + "/tokenizer.model");
  if (has_sp && !fs::exists(base_dir + "/tokenizer_config.json")) {
    // What transformers' LlamaTokenizer needs next to a SentencePiece model: the special
    // tokens are SentencePiece's defaults (<s> </s> <unk>, as in LLaMA's own tokenizer).
    nlohmann::json t = {{"tokenizer_class", "LlamaTokenizer"},
                        {"bos_token", "<s>"},
                        {"eos_token", "</s>"},
                        {"unk_token", "<unk>"},
                        {"pad_token", nullptr},
                        {"add_bos_token", true},
                        {"add_eos_token", false},
                        {"clean_up_tokenization_spaces", false},
                        {"legacy", true},
                        {"model_max_length", model.max_position_embeddings}};
    WriteFileAtomic(out_dir + "/tokenizer_config.json", t.dump(2) + "\n");
  }
  if (!fs::exists(base_dir + "/generation_config.json")) {
    nlohmann::json g = {{"_from_model_config", true},
                        {"bos_token_id", model.bos_token_id},
                        {"eos_token_id", model.eos_token_id}};
    WriteFileAtomic(out_dir + "/generation_config.json", g.dump(2) + "\n");
  }
}

std::string MergeTask(const std::string& export_dir, const std::string& base_dir, const std::string& task,
                      const std::string& out_dir) {
  CheckBaseDir(base_dir);
  auto model = LoadLlamaConfig(base_dir);
  auto ex = LoadExport(export_dir, model);
  return MergeTask(ex, model, base_dir, task, out_dir, export_dir);
}

std::string MergeTask(const LoadedExport& ex, const LlamaConfig& model, const std::string& base_dir,
                      const std::string& task, const std::string& out_dir, const std::string& source) {
  const int t = TaskIndex(ex, task);
  CheckBaseDir(base_dir);
  SafetensorsCollection st(base_dir);
  std::map<std::string, const MoreAdapter*> by_hf;  // "model.layers.<i>.self_attn.q_proj.weight" -> adapter
  for (const auto& a : ex.adapters->adapters()) {
    auto dot = a->name().rfind('.');
    by_hf["model." + a->name().substr(0, dot) + "." + HfModuleName(a->name().substr(dot + 1)) + ".weight"] = a.get();
  }
  // the tensors of each base file, in the base's own shard layout
  std::map<std::string, std::vector<std::string>> by_file;  // file name -> tensor names
  uint64_t need = 0;
  for (const auto& name : st.Names()) by_file[fs::path(st.FileFor(name).path()).filename().string()].push_back(name);
  for (const auto& [file, names] : by_file) need += st.FileFor(names.front()).file_size();
  const auto tmp = TmpDirFor(out_dir);
  TmpDirGuard guard(tmp);
  // refuse early when the merged files cannot fit (a full disk later is still caught by the writer)
  const auto space = fs::space(tmp);
  if (space.available < need + (1u << 20))
    throw Error(fmt::format("merging task '{}' into '{}': not enough disk space: the merged model needs {}, "
                            "{} are free; nothing was written",
                            task, out_dir, HumanBytes(need), HumanBytes(space.available)),
                "free space or give another --out");
  for (const auto& [file, names] : by_file) {
    const auto& src = st.FileFor(names.front());
    std::vector<TensorInfo> infos;
    for (const auto& n : names) infos.push_back(src.Info(n));
    auto meta = src.Metadata();
    for (auto it = meta.begin(); it != meta.end();) it = it->first.rfind("crc32.", 0) == 0 ? meta.erase(it) : std::next(it);
    meta["format"] = "pt";
    meta["merged_task"] = task;
    meta["source"] = source;
    SafetensorsStreamWriter w(tmp + "/" + file, infos, meta);
    for (const auto& info : w.Order()) {
      const auto& in = src.Info(info.name);
      const void* data = src.Data(info.name);
      auto ad = by_hf.find(info.name);
      if (ad == by_hf.end()) {
        w.Append(info.name, data, in.end - in.begin);  // unchanged: bytes straight from the map
      } else {
        // W_t = W0 + dW_t in fp32, rounded once to the base dtype
        torch::NoGradGuard ng;
        auto w0 = torch::from_blob(const_cast<void*>(data), in.shape, torch::TensorOptions().dtype(TorchDType(in.dtype)));
        auto w32 = w0.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);  // never the read-only map
        w32.add_(ad->second->MergedDelta(t));
        auto merged = w32.to(w0.scalar_type()).contiguous();
        w.Append(info.name, merged.data_ptr(), merged.nbytes());
      }
      src.Release(info.name);  // keep resident memory at about one tensor
    }
    w.Finish();
  }
  if (fs::exists(base_dir + "/model.safetensors.index.json"))  // same tensors, dtypes and layout
    CopyFile(base_dir + "/model.safetensors.index.json", tmp + "/model.safetensors.index.json");
  CopyFile(base_dir + "/config.json", tmp + "/config.json");
  WriteHfSideFiles(base_dir, model, tmp);
  guard.Commit(out_dir);
  return out_dir;
}

int TaskIndex(const LoadedExport& ex, const std::string& task) {
  auto it = std::find(ex.tasks.begin(), ex.tasks.end(), task);
  if (it == ex.tasks.end())
    throw Error(fmt::format("unknown task '{}': the export holds [{}]", task, fmt::join(ex.tasks, ", ")),
                "use one of those names or 'all'");
  return static_cast<int>(it - ex.tasks.begin());
}

std::string ExportPeft(const LoadedExport& ex, const LlamaConfig& model, const std::string& base_dir,
                       const std::string& task, const std::string& out_dir, bool uniform) {
  const int t = TaskIndex(ex, task);
  torch::NoGradGuard ng;
  const auto& opts = ex.adapters->adapters().front()->options();
  const int64_t R = opts.rank;
  // one global lora_alpha; PEFT then scales module m by lora_alpha / r_m (rank_pattern), and
  // each module's exact factors are folded into its B so that this gives the trained function
  const double lora_alpha = uniform ? static_cast<double>(R) : opts.alpha;
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json rank_pattern = nlohmann::json::object();
  std::set<std::string> targets;
  for (const auto& a : ex.adapters->adapters()) {
    auto dot = a->name().rfind('.');
    const auto hf = HfModuleName(a->name().substr(dot + 1));         // "self_attn.q_proj"
    targets.insert(hf.substr(hf.find('.') + 1));                      // "q_proj"
    const auto module = "model." + a->name().substr(0, dot) + "." + hf;  // "model.layers.0.self_attn.q_proj"
    const auto f = a->FactorsFor(t, /*training=*/false);
    const int64_t rt = f.a.size(0);
    auto A = f.a.contiguous();                                        // [rt, d_in]
    // h = W0 x + B diag(w) A x (w: one factor s(r_t) alpha/r, or per-component factors [rt]);
    // PEFT computes W0 x + (lora_alpha / r_m) B' A x, so B' = B diag(w) r_m / lora_alpha, in
    // float64, rounded once (a LoRA run's B comes back unchanged: w r / alpha = 1)
    const double peft_scale = lora_alpha / static_cast<double>(uniform ? R : rt);
    auto B = (f.b.to(torch::kFloat64) * (f.w.to(torch::kFloat64) / peft_scale)).to(torch::kFloat32).contiguous();  // [d_out, rt]
    if (uniform && rt < R) {  // zero-padded to rank R: the extra components contribute 0
      A = torch::cat({A, torch::zeros({R - rt, A.size(1)}, A.options())}, 0);   // [R, d_in]
      B = torch::cat({B, torch::zeros({B.size(0), R - rt}, B.options())}, 1);   // [d_out, R]
    }
    tensors["base_model.model." + module + ".lora_A.weight"] = A;
    tensors["base_model.model." + module + ".lora_B.weight"] = B;
    if (!uniform) rank_pattern[module] = rt;
  }
  const auto tmp = TmpDirFor(out_dir);
  TmpDirGuard guard(tmp);
  SaveTensorFile(tmp + "/adapter_model.safetensors", tensors, {{"format", "pt"}, {"more_task", task}});
  nlohmann::json c = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"base_model_name_or_path", AbsPath(base_dir)},
                      {"r", R},
                      {"lora_alpha", lora_alpha},
                      {"target_modules", std::vector<std::string>(targets.begin(), targets.end())},
                      {"rank_pattern", rank_pattern},
                      {"alpha_pattern", nlohmann::json::object()},  // empty: a loader that ignores it is right
                      {"lora_dropout", 0.0},
                      {"bias", "none"},
                      {"fan_in_fan_out", false},
                      {"use_rslora", false},
                      {"use_dora", false},
                      {"init_lora_weights", true},
                      {"inference_mode", true},
                      {"modules_to_save", nullptr},
                      {"layers_to_transform", nullptr},
                      {"revision", nullptr}};
  WriteFileAtomic(tmp + "/adapter_config.json", c.dump(2) + "\n");
  WriteHfSideFiles(base_dir, model, tmp);
  guard.Commit(out_dir);
  return out_dir;
}

}  // namespace more
