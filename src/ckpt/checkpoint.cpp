#include "more/ckpt/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/fault.h"
#include "more/core/hash.h"
#include "more/core/log.h"
#include "more/core/safetensors.h"

namespace fs = std::filesystem;

namespace more {

uint32_t CheckpointManager::StateChecksum(const nlohmann::json& state) {
  const std::string text = state.dump();  // compact, keys sorted: the same bytes on every build
  return Crc32(text.data(), text.size());
}

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
  static const std::regex step_re("step-[0-9]{8}");
  if (!std::regex_match(name, step_re))
    throw Error(fmt::format("checkpoint pointer '{}' holds '{}', which is not a checkpoint name (step-NNNNNNNN)",
                            pointer, name),
                "restore the pointer (the newest complete step-* directory) or delete it to start fresh");
  if (!fs::is_directory(dir))
    throw Error(fmt::format("checkpoint pointer '{}' names '{}', which does not exist", pointer, dir),
                "restore the directory or delete the pointer to start fresh");
  return dir;
}

std::vector<std::string> CheckpointManager::RemoveIncomplete() const {
  std::vector<std::string> removed;
  if (!fs::is_directory(root_)) return removed;
  for (const auto& e : fs::directory_iterator(root_)) {
    const auto name = e.path().filename().string();
    if (!e.is_directory()) continue;
    if (name.rfind(".old-", 0) == 0 && !fs::exists(root_ + "/" + name.substr(5))) {
      fs::rename(e.path(), root_ + "/" + name.substr(5));  // killed between the two renames of Commit
      continue;
    }
    if (name.rfind(".tmp-", 0) == 0 || name.rfind(".old-", 0) == 0) {
      fs::remove_all(e.path());
      removed.push_back(e.path().string());
    }
  }
  return removed;
}

void CheckpointManager::Prepare(int64_t step) const {
  fs::create_directories(root_);
  fs::remove_all(TmpDir(step));  // leftovers of a killed save (perhaps with another pp)
  fs::create_directories(TmpDir(step));
}

void CheckpointManager::WriteStage(int64_t step, int stage, const std::map<std::string, torch::Tensor>& adapters,
                                   const std::map<std::string, torch::Tensor>& optimizer) const {
  const auto tmp = TmpDir(step);
  SaveTensorFile(fmt::format("{}/adapters.stage-{}.safetensors", tmp, stage), adapters,
                 {{"format_version", std::to_string(kCheckpointFormatVersion)}});
  MaybeKillAt("ckpt_write", step);
  SaveTensorFile(fmt::format("{}/optimizer.stage-{}.safetensors", tmp, stage), optimizer,
                 {{"format_version", std::to_string(kCheckpointFormatVersion)}});
}

std::string CheckpointManager::Commit(int64_t step, nlohmann::json state) const {
  const auto tmp = TmpDir(step);
  const auto final_dir = root_ + "/" + StepName(step);
  state["format_version"] = kCheckpointFormatVersion;
  state["step"] = step;
  state.erase(kStateChecksumKey);
  state[kStateChecksumKey] = StateChecksum(state);
  WriteFileAtomic(tmp + "/state.json", state.dump(1));
  std::error_code ec;
  // A re-run of the same step (resumed from an older one, or saved again after a stop signal):
  // move the old directory aside rather than delete it, so a crash here never leaves "latest"
  // naming nothing; it is removed once the new one is in place.
  const auto old_dir = root_ + "/.old-" + StepName(step);
  if (fs::exists(final_dir)) {
    fs::remove_all(old_dir, ec);
    fs::rename(final_dir, old_dir, ec);
    if (ec)
      throw Error(fmt::format("cannot move the old checkpoint '{}' aside: {}", final_dir, ec.message()));
  }
  fs::rename(tmp, final_dir, ec);
  if (ec)
    throw Error(fmt::format("cannot rename checkpoint '{}' to '{}': {}", tmp, final_dir, ec.message()));
  FsyncDirectory(root_);
  MaybeKillAt("ckpt_commit", step);
  WriteFileAtomic(root_ + "/latest", StepName(step) + "\n");
  fs::remove_all(old_dir, ec);
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

std::string CheckpointManager::Resolve(const std::string& path) {
  if (!fs::exists(path))
    throw Error(fmt::format("checkpoint '{}' does not exist", path),
                "give a checkpoint directory (step-N), the checkpoints root, or its 'latest' file");
  if (fs::is_regular_file(path)) {
    if (fs::path(path).filename() != "latest")
      throw Error(fmt::format("checkpoint '{}' is a file, not a checkpoint directory", path),
                  "give a checkpoint directory (step-N), the checkpoints root, or its 'latest' file");
    auto parent = fs::path(path).parent_path().string();
    auto dir = CheckpointManager(parent.empty() ? "." : parent, 0).Latest();
    return *dir;  // Latest() throws for a dangling pointer
  }
  if (fs::exists(fs::path(path) / "state.json")) return path;
  if (fs::exists(fs::path(path) / "latest")) return *CheckpointManager(path, 0).Latest();
  std::vector<std::string> steps;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) steps.push_back(e.path().filename());
  if (!steps.empty())
    throw Error(fmt::format("'{}' holds checkpoints ({}) but no 'latest' pointer", path, fmt::join(steps, ", ")),
                "name one of them, e.g. " + path + "/" + steps.back());
  throw Error(fmt::format("'{}' is not a checkpoint: it has no state.json (an incomplete or foreign directory) "
                          "and no 'latest' pointer (not a checkpoints root)",
                          path),
              "give a checkpoint directory (step-N), the checkpoints root, or its 'latest' file");
}

nlohmann::json CheckpointManager::LoadState(const std::string& dir) {
  Loaded out;
  const auto state_path = dir + "/state.json";
  if (!fs::exists(state_path))
    throw Error(fmt::format("checkpoint '{}' has no state.json", dir), "it is incomplete; use an earlier one");
  try {
    out.state = nlohmann::json::parse(ReadFileToString(state_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint '{}': state.json is not valid JSON ({})", dir, e.what()));
  }
  if (!out.state.is_object()) throw Error(fmt::format("checkpoint '{}': state.json is not a JSON object", dir));
  // the version first: it says whether (and how) the state is checksummed
  const auto version_field = out.state.find("format_version");
  const int version = version_field != out.state.end() && version_field->is_number_integer() ? version_field->get<int>() : -1;
  if (version != kCheckpointFormatVersion && version != 1)
    throw Error(fmt::format("checkpoint '{}' has format version {}; this build reads versions 1 and {}", dir, version,
                            kCheckpointFormatVersion),
                "use the trainer version that wrote it");
  if (version == 1) {
    spdlog::warn("checkpoint '{}' has format version 1: its state.json carries no checksum, so it is not verified",
                 dir);
  } else {
    const auto it = out.state.find(kStateChecksumKey);
    if (it == out.state.end() || !it->is_number_unsigned())
      throw Error(fmt::format("checkpoint '{}': state.json has no '{}' field", dir, kStateChecksumKey),
                  "the file was damaged or edited; resume from an earlier checkpoint (point 'latest' at it)");
    const uint32_t stored = it->get<uint32_t>();
    out.state.erase(it);
    const uint32_t computed = StateChecksum(out.state);
    if (stored != computed)
      throw Error(fmt::format("'{}': checksum mismatch (stored {}, computed {}): the file was damaged or edited",
                              state_path, stored, computed),
                  "resume from an earlier checkpoint (point 'latest' at it), or start a new run directory");
  }
  // the step recorded inside must be the one the directory is named for
  const auto step_field = out.state.find("step");
  if (step_field == out.state.end() || !step_field->is_number_integer())
    throw Error(fmt::format("checkpoint '{}': state.json has no integer 'step'", dir));
  const auto name = fs::path(dir).filename().string();
  static const std::regex step_re("step-([0-9]{8})");
  std::smatch match;
  if (std::regex_match(name, match, step_re) && std::stoll(match[1].str()) != step_field->get<int64_t>())
    throw Error(fmt::format("checkpoint '{}': state.json says step {} but the directory is named for step {}", dir,
                            step_field->get<int64_t>(), std::stoll(match[1].str())),
                "the checkpoint was edited or moved; resume from an intact one");
  return std::move(out.state);
}

CheckpointManager::Loaded CheckpointManager::Load(const std::string& dir) {
  Loaded out;
  out.state = LoadState(dir);
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
