#include "more/ckpt/run_record.h"

#include <filesystem>

#include "more/ckpt/checkpoint.h"
#include "more/core/error.h"
#include "more/core/log.h"

namespace fs = std::filesystem;

namespace more {

std::string ResolveTransferSource(const std::string& path) {
  if (fs::exists(path + "/state.json")) return path;
  if (fs::is_directory(path))
    if (auto latest = CheckpointManager(path, 1).Latest()) return *latest;
  throw Error(fmt::format("transfer.from '{}' is neither a checkpoint (a step directory with state.json) nor a "
                          "checkpoint root with a 'latest' pointer", path),
              "point it at <run>/checkpoints or <run>/checkpoints/step-N of a MoRE run");
}

AdapterRecord DecideAdapterRecord(const Config& cfg, const std::vector<std::string>& task_names) {
  auto rec = AdapterRecordFromConfig(cfg, task_names);
  if (cfg.transfer.from.empty()) return rec;
  const auto src_dir = ResolveTransferSource(cfg.transfer.from);
  const auto src = CheckpointAdapterRecord(CheckpointManager::LoadState(src_dir), src_dir);
  // the settings that define the transferred function must be the source's
  auto mine = AdapterRecordToJson(rec), theirs = AdapterRecordToJson(src);
  for (const char* key : {"method", "rank", "alpha", "scaling", "selection", "experts", "gate_input", "gate", "targets"}) {
    if (mine.at(key) == theirs.at(key)) continue;
    const std::string cfg_key = std::string(key) == "targets" ? "adapter.targets" : fmt::format("adapter.{}", key);
    throw Error(fmt::format("transfer.from '{}' trained its adapters with {} = {} but this run sets {} = {}: the "
                            "transferred adapters would compute something else than they were trained for",
                            src_dir, key, theirs.at(key).dump(), cfg_key, mine.at(key).dump()),
                fmt::format("set --{}={} (the source run's)", cfg_key,
                            theirs.at(key).is_string() ? theirs.at(key).get<std::string>() : theirs.at(key).dump()));
  }
  rec.options.scale_tasks = src.scale_tasks();
  spdlog::info("transfer from {}: |T| of s(r_t) = {} (the source run's)", src_dir, rec.options.scale_tasks);
  return rec;
}

AdapterRecord CheckpointAdapterRecord(const nlohmann::json& state, const std::string& dir) {
  const auto where = dir + "/state.json";
  if (state.contains("adapter_record")) return AdapterRecordFromJson(state.at("adapter_record"), where);
  // written before the record existed: derive it as that run did, once
  if (!state.contains("config") || !state.contains("task_names"))
    throw Error(fmt::format("'{}' has no adapter_record and no config + task_names to derive one from", where),
                "the checkpoint is damaged; use an intact one");
  Config cfg;
  std::vector<std::string> tasks;
  try {
    cfg = ConfigFromJson(state.at("config"));
    tasks = state.at("task_names").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}': config or task_names is malformed ({})", where, e.what()),
                "the checkpoint is damaged; use an intact one");
  }
  auto rec = DecideAdapterRecord(cfg, tasks);
  spdlog::warn("checkpoint '{}' predates the adapter record: derived it from its config{} (|T| = {}, scaling {}, "
               "alpha {})", dir, cfg.transfer.from.empty() ? "" : " and its transfer source " + cfg.transfer.from,
               rec.scale_tasks(), rec.options.scaling, rec.options.alpha);
  return rec;
}

}  // namespace more
