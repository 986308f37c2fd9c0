#include "more/data/shard_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "more/core/error.h"

namespace more {

int ShardChunkRows(int max_len) {
  const int by_bytes = (1 << 20) / (4 * std::max(1, max_len));
  return std::clamp(by_bytes, 1, 256);
}

std::string ShardFileName(const std::string& split, int index, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.h5", split, index, count);
}

std::pair<int64_t, int64_t> ShardRowRange(int64_t size, int index, int count) {
  return {size * index / count, size * (index + 1) / count};
}

bool IsKnownMetric(const std::string& metric) {
  return metric == "accuracy" || metric == "mcc" || metric == "f1" || IsRegressionMetric(metric);
}

bool IsRegressionMetric(const std::string& metric) { return metric == "pearson" || metric == "spearman"; }

void ValidateTasks(const std::vector<TaskInfo>& tasks, const std::string& where) {
  if (tasks.empty()) throw Error(where + ": no tasks", "the manifest / shard lists no task");
  std::set<std::string> seen;
  for (const auto& t : tasks) {
    if (t.name.empty() || t.name == "." || t.name == ".." || t.name.find('/') != std::string::npos)
      throw Error(where + ": invalid task name '" + t.name + "'",
                  "task names must be non-empty and contain no '/'");
    if (!seen.insert(t.name).second) throw Error(where + ": task '" + t.name + "' listed twice");
    if (!IsKnownMetric(t.metric))
      throw Error(where + ": task '" + t.name + "' has unknown metric '" + t.metric + "'",
                  "use accuracy, mcc, f1, pearson or spearman");
    if (t.metric == "f1" && t.candidates.size() != 2)
      throw Error(fmt::format("{}: task '{}' uses metric f1 (binary) but has {} candidates", where, t.name,
                              t.candidates.size()),
                  "f1 needs exactly two candidates; the second is the positive class");
  }
}

std::string TasksToJson(const std::vector<TaskInfo>& tasks) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& t : tasks)
    arr.push_back({{"name", t.name}, {"metric", t.metric}, {"candidates", t.candidates}, {"candidate_ids", t.candidate_ids}});
  return arr.dump();
}

std::vector<TaskInfo> TasksFromJson(const std::string& json, const std::string& where) {
  std::vector<TaskInfo> tasks;
  try {
    const auto arr = nlohmann::json::parse(json);
    if (!arr.is_array()) throw Error(where + ": attribute 'tasks' is not a JSON array");
    for (const auto& j : arr) {
      TaskInfo t;
      t.name = j.at("name").get<std::string>();
      t.metric = j.at("metric").get<std::string>();
      t.candidates = j.at("candidates").get<std::vector<std::string>>();
      if (j.contains("candidate_ids"))
        for (const auto& ids : j.at("candidate_ids")) {  // each id checked, not wrapped into int32
          auto& out = t.candidate_ids.emplace_back();
          for (const auto& id : ids.get<std::vector<nlohmann::json>>()) {
            if (!id.is_number_integer() || (id.is_number_unsigned() && id.get<uint64_t>() > INT32_MAX) ||
                id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX)
              throw Error(fmt::format("{}: attribute 'tasks': task '{}' has candidate token id {}, not a 32-bit integer",
                                      where, t.name, id.dump()),
                          "re-create the shards with shard_data build");
            out.push_back(static_cast<int32_t>(id.get<int64_t>()));
          }
        }
      tasks.push_back(std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": attribute 'tasks' is not valid task JSON: " + e.what(),
                "re-create the shards with shard_data build");
  }
  ValidateTasks(tasks, where);
  return tasks;
}

}  // namespace more
