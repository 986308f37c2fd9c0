// The adapter record of a run: everything that defines the function its adapters compute,
// decided once when the run starts (ckpt/run_record.h: from the config, or for a transfer run
// from its source run's record), saved in every checkpoint ("adapter_record" in state.json) and
// every export (adapter_config.json), and read from there by every consumer: the trainer on
// resume, export, merge, PEFT export and import, more_logits. Nothing else maps the config to
// adapter settings (AdapterRecordFromConfig is that one mapping).
//
// JSON (version 2; version 1, written before "gate" existed, is read as gate "learned"):
//   {"version": 2, "method": "more"|"lora", "rank": r, "alpha": a, "scaling": "paper"|"none"|
//    "per_component", "selection": "ste"|"soft", "scale_tasks": |T| of s(r_t) = r_t/|T|,
//    "tasks": [rows of E, the shards' task order], "trained_tasks": [names, a subset of tasks:
//    the contrastive classes], "experts": [ranks] ([] = 1..r), "gate_input": "task"|"shared",
//    "gate": "learned"|"frozen_at_init",
//    "targets": ["q", ...], "tau": t, "task_emb_init": "kaiming"|"normal", "task_emb_std": s}
// Not part of it: adapter dropout and the init seed (they shape training, not the trained
// function: dropout is off in evaluation and export, and every tensor the seed initialises is
// then loaded or trained); the run's config supplies them.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "more/adapter/more_adapter.h"
#include "more/config/config.h"

namespace more {

inline constexpr int kAdapterRecordVersion = 2;

struct AdapterRecord {
  AdapterOptions options;            // dropout 0 and seed 0 unless a run sets them (ForRun)
  std::vector<std::string> targets;  // module kinds: q k v o gate up down
  std::vector<std::string> tasks;    // rows of E (options.num_tasks of them)

  int64_t scale_tasks() const { return options.scale_tasks > 0 ? options.scale_tasks : options.num_tasks; }
  std::vector<std::string> trained_tasks() const;
  // The options a run builds its adapters with: these plus the config's dropout and seed.
  AdapterOptions ForRun(const Config& cfg) const;
};

// The ids (positions in `task_names`, the shards' task order) of the tasks a run trains:
// data.tasks, or every task when it is empty. An unknown name is an error naming it.
std::vector<int64_t> TrainedTaskIds(const Config& cfg, const std::vector<std::string>& task_names);

// The record of a run configuration on shards holding `task_names` (not a transfer run: see
// DecideAdapterRecord): E gets a row per task of the shards; s(r_t) = r_t/|T| and the
// contrastive classes use the trained tasks only (TrainedTaskIds).
AdapterRecord AdapterRecordFromConfig(const Config& cfg, const std::vector<std::string>& task_names);

nlohmann::json AdapterRecordToJson(const AdapterRecord& r);
// Parses and checks a record; an error names `where` (the file) and the field that is missing,
// of the wrong type or out of range.
AdapterRecord AdapterRecordFromJson(const nlohmann::json& j, const std::string& where);

// The differences between two records as "field: a -> b" lines (empty: the same function).
std::vector<std::string> AdapterRecordDiff(const AdapterRecord& a, const AdapterRecord& b);

}  // namespace more
