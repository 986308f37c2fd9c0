// Where a run's adapter record (adapter/adapter_record.h) comes from:
//   a fresh run          from its config (AdapterRecordFromConfig)
//   a fresh transfer run from its source checkpoint's record: the adapters compute for a new
//                        task exactly what they computed for its source task, so |T| of s(r_t)
//                        stays the source's; the task list is this run's shards', and the
//                        settings that define the function (method, rank, alpha, scaling,
//                        selection, experts, gate input, targets) must equal the source's
//                        (a config that asks for others is refused, naming the field)
//   a resumed run        the record in its checkpoint (Trainer)
//   export, merge, more_logits, PEFT export: the record in the checkpoint or export they read
// A checkpoint written before the record existed (no "adapter_record") gets one derived once
// from its resolved config, its task names and, for a transfer run, its source checkpoint's
// record, exactly as its run decided it; the log says so.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "more/adapter/adapter_record.h"
#include "more/config/config.h"

namespace more {

// transfer.from as a checkpoint directory: a step directory, or a checkpoint root's latest.
std::string ResolveTransferSource(const std::string& path);

// The record a run starting now decides on (transfer.from: through ResolveTransferSource).
AdapterRecord DecideAdapterRecord(const Config& cfg, const std::vector<std::string>& task_names);

// The record of a checkpoint's state.json (`dir` names it in messages and logs).
AdapterRecord CheckpointAdapterRecord(const nlohmann::json& state, const std::string& dir);

}  // namespace more
