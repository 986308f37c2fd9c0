// Checkpoints: one directory per step under the checkpoint root.
//
//   <root>/step-00000100/          written as <root>/.tmp-step-00000100 and renamed when
//       adapters.stage-<k>.safetensors   complete (a crash never leaves a half checkpoint under
//       optimizer.stage-<k>.safetensors  a real name); one file pair per pipeline stage, holding
//       state.json                       that stage's FULL adapter tensors (not TP-sharded), so a
//                                        run can resume on another tp/pp/dp layout
//   <root>/latest                  "step-00000100", written (atomically) last
// keep_last: older step directories are removed after a new one is complete.
//
// state.json: format_version, step, model fingerprint (config.json fields), the run's adapter
// record ("adapter_record", adapter/adapter_record.h: adapter settings and task names; older
// checkpoints have "adapter" and "task_names" instead, see ckpt/run_record.h), task->rank map,
// sampler state, resolved config, and a CRC-32 of every tensor (verified on load). state.json carries "state_crc32": the CRC-32 of its own compact
// JSON text without that field; Load verifies it, and that "step" matches the directory name.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace more {

// Version 2 adds "state_crc32" to state.json; version 1 checkpoints are still read (unverified).
inline constexpr int kCheckpointFormatVersion = 2;
inline constexpr const char* kStateChecksumKey = "state_crc32";

class CheckpointManager {
 public:
  CheckpointManager(std::string root, int64_t keep_last);

  // Name of the latest complete checkpoint directory (full path), if any. A "latest" pointer
  // to a missing directory is an error naming both.
  std::optional<std::string> Latest() const;
  static std::string StepName(int64_t step);

  // Removes directories left by a save that was killed (.tmp-*, .old-*; an .old- one whose step
  // directory is missing is moved back instead); returns the removed paths.
  // World rank 0 only, before any rank writes.
  std::vector<std::string> RemoveIncomplete() const;
  // World rank 0, then a barrier, before WriteStage: an empty in-progress directory for `step`.
  void Prepare(int64_t step) const;
  // Stage part: tensors of one pipeline stage (adapters / optimizer), written into the
  // in-progress directory of `step`. Call on the stage root of every stage, then Commit on
  // world rank 0 after a barrier.
  void WriteStage(int64_t step, int stage, const std::map<std::string, torch::Tensor>& adapters,
                  const std::map<std::string, torch::Tensor>& optimizer) const;
  // Writes state.json, renames the directory into place, updates latest, prunes old ones.
  std::string Commit(int64_t step, nlohmann::json state) const;

  struct Loaded {
    nlohmann::json state;
    std::map<std::string, torch::Tensor> adapters;   // all stages merged
    std::map<std::string, torch::Tensor> optimizer;  // all stages merged
  };
  // What a user may name as "the checkpoint": a checkpoint directory (holds state.json), the
  // checkpoints root (holds `latest`), or the `latest` pointer file itself. Returns the
  // checkpoint directory; an error says which of the three `path` was taken for and what is
  // missing.
  static std::string Resolve(const std::string& path);
  // Reads a checkpoint directory; checks format version, checksums (tensors and state.json) and
  // that the step inside state.json is the one the directory is named for.
  static Loaded Load(const std::string& dir);
  // Only the checked state.json of a checkpoint directory (the same checks as Load).
  static nlohmann::json LoadState(const std::string& dir);
  // CRC-32 of state.dump() (state without kStateChecksumKey).
  static uint32_t StateChecksum(const nlohmann::json& state);

  const std::string& root() const { return root_; }

 private:
  std::string TmpDir(int64_t step) const;
  std::string root_;
  int64_t keep_last_;
};

}  // namespace more
