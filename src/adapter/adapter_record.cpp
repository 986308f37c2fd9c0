#include "more/adapter/adapter_record.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "more/core/error.h"
#include "more/core/strings.h"

namespace more {

std::vector<std::string> AdapterRecord::trained_tasks() const {
  std::vector<std::string> out;
  if (options.active_tasks.empty()) return tasks;
  for (int64_t id : options.active_tasks) out.push_back(tasks.at(static_cast<size_t>(id)));
  return out;
}

AdapterOptions AdapterRecord::ForRun(const Config& cfg) const {
  AdapterOptions o = options;
  o.dropout = cfg.adapter.dropout;
  o.seed = static_cast<uint64_t>(cfg.train.seed);
  return o;
}

std::vector<int64_t> TrainedTaskIds(const Config& cfg, const std::vector<std::string>& task_names) {
  std::vector<int64_t> ids;
  for (const auto& item : SplitList(cfg.data.tasks)) {
    auto it = std::find(task_names.begin(), task_names.end(), item);
    if (it == task_names.end())
      throw Error(fmt::format("data.tasks names task '{}' but the shards hold [{}]", item, fmt::join(task_names, ", ")),
                  "use task names of the shards' manifest");
    const auto id = static_cast<int64_t>(it - task_names.begin());
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  if (ids.empty())
    for (size_t t = 0; t < task_names.size(); ++t) ids.push_back(static_cast<int64_t>(t));
  std::sort(ids.begin(), ids.end());
  return ids;
}

AdapterRecord AdapterRecordFromConfig(const Config& cfg, const std::vector<std::string>& task_names) {
  AdapterRecord r;
  auto& ao = r.options;
  ao.active_tasks = TrainedTaskIds(cfg, task_names);
  ao.scale_tasks = static_cast<int64_t>(ao.active_tasks.size());
  ao.more = cfg.adapter.method == "more";
  ao.rank = cfg.adapter.rank;
  ao.alpha = cfg.adapter.alpha;
  ao.dropout = 0;
  ao.scaling = cfg.adapter.scaling;
  ao.soft = cfg.adapter.selection == "soft";
  ao.num_tasks = static_cast<int64_t>(task_names.size());
  ao.tau = cfg.adapter.tau;
  ao.experts = cfg.ExpertRanks();
  ao.shared_gate_input = cfg.adapter.gate_input == "shared";
  ao.frozen_gate = cfg.adapter.gate == "frozen_at_init";
  ao.task_emb_init = cfg.adapter.task_emb_init;
  ao.task_emb_std = cfg.adapter.task_emb_std;
  ao.seed = 0;
  r.targets = cfg.TargetModules();
  r.tasks = task_names;
  return r;
}

nlohmann::json AdapterRecordToJson(const AdapterRecord& r) {
  const auto& o = r.options;
  return {{"version", kAdapterRecordVersion},
          {"method", o.more ? "more" : "lora"},
          {"rank", o.rank},
          {"alpha", o.alpha},
          {"scaling", o.scaling},
          {"selection", o.soft ? "soft" : "ste"},
          {"scale_tasks", r.scale_tasks()},
          {"tasks", r.tasks},
          {"trained_tasks", r.trained_tasks()},
          {"experts", o.experts},
          {"gate_input", o.shared_gate_input ? "shared" : "task"},
          {"gate", o.frozen_gate ? "frozen_at_init" : "learned"},
          {"targets", r.targets},
          {"tau", o.tau},
          {"task_emb_init", o.task_emb_init},
          {"task_emb_std", o.task_emb_std}};
}

namespace {

// Typed access to one field of a record, with errors naming the file and the field.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}
  [[noreturn]] void Bad(const std::string& key, const std::string& what) const {
    throw Error(fmt::format("'{}': adapter record field '{}' {}", where_, key, what),
                "the file was damaged or edited; use an intact checkpoint or re-export it");
  }
  const nlohmann::json& At(const std::string& key) const {
    auto it = j_.find(key);
    if (it == j_.end()) Bad(key, "is missing");
    return *it;
  }
  std::string Choice(const std::string& key, std::initializer_list<const char*> allowed) const {
    const auto& v = At(key);
    if (!v.is_string()) Bad(key, "is not a string");
    for (const char* a : allowed)
      if (v.get<std::string>() == a) return a;
    Bad(key, fmt::format("is '{}'; expected one of {}", v.get<std::string>(), fmt::join(allowed, ", ")));
  }
  int64_t Int(const std::string& key, int64_t min) const {
    const auto& v = At(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min) Bad(key, fmt::format("is not an integer >= {}", min));
    return v.get<int64_t>();
  }
  double Positive(const std::string& key) const {
    const auto& v = At(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) Bad(key, "is not a number > 0");
    return v.get<double>();
  }
  std::vector<std::string> Names(const std::string& key) const {
    const auto& v = At(key);
    std::vector<std::string> out;
    if (!v.is_array()) Bad(key, "is not a list of names");
    for (const auto& e : v) {
      if (!e.is_string() || e.get<std::string>().empty()) Bad(key, "is not a list of names");
      out.push_back(e.get<std::string>());
    }
    if (std::set<std::string>(out.begin(), out.end()).size() != out.size()) Bad(key, "names an entry twice");
    return out;
  }

 private:
  const nlohmann::json& j_;
  std::string where_;
};

}  // namespace

AdapterRecord AdapterRecordFromJson(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(fmt::format("'{}': the adapter record is not a JSON object", where));
  const Fields f(j, where);
  const int64_t version = f.Int("version", 0);
  if (version != kAdapterRecordVersion && version != 1)
    f.Bad("version", fmt::format("is {}; this build reads versions 1 and {}", j.at("version").dump(),
                                 kAdapterRecordVersion));
  AdapterRecord r;
  auto& o = r.options;
  o.more = f.Choice("method", {"more", "lora"}) == "more";
  o.rank = f.Int("rank", 1);
  o.alpha = f.Positive("alpha");
  o.scaling = f.Choice("scaling", {"paper", "none", "per_component"});
  o.soft = f.Choice("selection", {"ste", "soft"}) == "soft";
  r.tasks = f.Names("tasks");
  if (r.tasks.empty()) f.Bad("tasks", "is empty");
  o.num_tasks = static_cast<int64_t>(r.tasks.size());
  o.scale_tasks = f.Int("scale_tasks", 1);
  for (const auto& name : f.Names("trained_tasks")) {
    auto it = std::find(r.tasks.begin(), r.tasks.end(), name);
    if (it == r.tasks.end()) f.Bad("trained_tasks", fmt::format("names '{}', which is not in 'tasks'", name));
    o.active_tasks.push_back(it - r.tasks.begin());
  }
  if (o.active_tasks.empty()) f.Bad("trained_tasks", "is empty");
  std::sort(o.active_tasks.begin(), o.active_tasks.end());
  const auto& ex = f.At("experts");
  if (!ex.is_array()) f.Bad("experts", "is not a list of ranks");
  for (const auto& e : ex) {
    if (!e.is_number_integer()) f.Bad("experts", "is not a list of ranks");
    const int64_t k = e.get<int64_t>();
    if (k < 1 || k > o.rank || (!o.experts.empty() && k <= o.experts.back()))
      f.Bad("experts", fmt::format("is not ascending ranks in 1..{}", o.rank));
    o.experts.push_back(k);
  }
  o.shared_gate_input = f.Choice("gate_input", {"task", "shared"}) == "shared";
  // version 1 (before adapter.gate existed): every gate was learned
  o.frozen_gate = version >= 2 && f.Choice("gate", {"learned", "frozen_at_init"}) == "frozen_at_init";
  if (o.frozen_gate && (!o.more || o.soft || o.shared_gate_input))
    f.Bad("gate", "is frozen_at_init, which needs method more, selection ste and gate_input task");
  r.targets = f.Names("targets");
  if (r.targets.empty()) f.Bad("targets", "is empty");
  for (const auto& t : r.targets)
    if (!std::set<std::string>{"q", "k", "v", "o", "gate", "up", "down"}.count(t))
      f.Bad("targets", fmt::format("names '{}', which is not one of q, k, v, o, gate, up, down", t));
  o.tau = f.Positive("tau");
  o.task_emb_init = f.Choice("task_emb_init", {"kaiming", "normal"});
  o.task_emb_std = f.Positive("task_emb_std");
  o.dropout = 0;
  o.seed = 0;
  return r;
}

std::vector<std::string> AdapterRecordDiff(const AdapterRecord& a, const AdapterRecord& b) {
  const auto ja = AdapterRecordToJson(a), jb = AdapterRecordToJson(b);
  std::vector<std::string> out;
  for (auto it = ja.begin(); it != ja.end(); ++it)
    if (!jb.contains(it.key()) || jb.at(it.key()) != it.value())
      out.push_back(fmt::format("{}: {} -> {}", it.key(), it.value().dump(), jb.value(it.key(), nlohmann::json()).dump()));
  return out;
}

}  // namespace more
