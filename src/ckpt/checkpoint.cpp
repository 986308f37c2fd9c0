#include "more/ckpt/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"

namespace fs = std::filesystem;

namespace more {

CheckpointManager::CheckpointManager(std::string root, int64_t keep_last)
    : root_(std::move(root)), keep_last_(keep_last) {}

std::string CheckpointManager::StepName(int64_t step) { return fmt::format("step-{:08d}", step); }

std::string CheckpointManager::TmpDir(int64_t step) const { return root_ + "/.tmp-" + StepName(step); }

std::optional<std::string> CheckpointManager::Latest() const {
  const auto pointer = root_ + "/latest";
  if (!fs::exists(pointer)) return std::nullopt;
  auto name = ReadFileToString(pointer);
  name.erase(std::remove_if(name.begin(), name.end(), [](char c) { return c == '\n' || c == ' '; }), name.end());
  const auto dir = root_ + "/" + name;
  if (!fs::is_directory(dir))
    throw Error(fmt::format("checkpoint pointer '{}' names '{}', which does not exist", pointer, dir),
                "restore the directory or delete the pointer to start fresh");
  return dir;
}

void CheckpointManager::WriteStage(int64_t step, int stage, const std::map<std::string, torch::Tensor>& adapters,
                                   const std::map<std::string, torch::Tensor>& optimizer) const {
  const auto tmp = TmpDir(step);
  fs::create_directories(tmp);
  SaveTensorFile(fmt::format("{}/adapters.stage-{}.safetensors", tmp, stage), adapters,
                 {{"format_version", std::to_string(kCheckpointFormatVersion)}});
  SaveTensorFile(fmt::format("{}/optimizer.stage-{}.safetensors", tmp, stage), optimizer,
                 {{"format_version", std::to_string(kCheckpointFormatVersion)}});
}

std::string CheckpointManager::Commit(int64_t step, nlohmann::json state) const {
  const auto tmp = TmpDir(step);
  const auto final_dir = root_ + "/" + StepName(step);
  state["format_version"] = kCheckpointFormatVersion;
  state["step"] = step;
  WriteFileAtomic(tmp + "/state.json", state.dump(1));
  std::error_code ec;
  if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);  // a re-run of the same step
  fs::rename(tmp, final_dir, ec);
  if (ec)
    throw Error(fmt::format("cannot rename checkpoint '{}' to '{}': {}", tmp, final_dir, ec.message()));
  WriteFileAtomic(root_ + "/latest", StepName(step) + "\n");
  // prune: keep the newest keep_last complete step directories
  std::vector<std::string> steps;
  std::regex re("step-[0-9]{8}");
  for (const auto& e : fs::directory_iterator(root_))
    if (e.is_directory() && std::regex_match(e.path().filename().string(), re))
      steps.push_back(e.path().filename().string());
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + keep_last_ < steps.size(); ++i) fs::remove_all(root_ + "/" + steps[i], ec);
  return final_dir;
}

CheckpointManager::Loaded CheckpointManager::Load(const std::string& dir) {
  Loaded out;
  const auto state_path = dir + "/state.json";
  if (!fs::exists(state_path))
    throw Error(fmt::format("checkpoint '{}' has no state.json", dir), "it is incomplete; use an earlier one");
  try {
    out.state = nlohmann::json::parse(ReadFileToString(state_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint '{}': state.json is not valid JSON ({})", dir, e.what()));
  }
  const int version = out.state.value("format_version", -1);
  if (version != kCheckpointFormatVersion)
    throw Error(fmt::format("checkpoint '{}' has format version {}; this build reads version {}", dir, version,
                            kCheckpointFormatVersion),
                "use the trainer version that wrote it");
  int stages = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.rfind("adapters.stage-", 0) == 0) {
      ++stages;
      for (auto& [k, v] : LoadTensorFile(e.path().string())) out.adapters[k] = v;
    } else if (name.rfind("optimizer.stage-", 0) == 0) {
      for (auto& [k, v] : LoadTensorFile(e.path().string())) out.optimizer[k] = v;
    }
  }
  if (stages == 0) throw Error(fmt::format("checkpoint '{}' holds no adapter files", dir));
  return out;
}

}  // namespace more
