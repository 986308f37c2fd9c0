// Trainer, its state across runs: the checkpoint it writes, resuming from one (also under another
// layout or with ckpt.allow_changes), and the start of a few-shot transfer run from a source run.
// The run's adapter record (ckpt/run_record.h) is what these read and write; trainer.cpp holds
// construction, the step, evaluation and the loop.
#include "more/train/trainer.h"

#include <chrono>
#include <filesystem>

#include "more/ckpt/run_record.h"
#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/fault.h"
#include "more/core/strings.h"
#include "more/data/sampler.h"

namespace fs = std::filesystem;

namespace more {

nlohmann::json Trainer::ModelFingerprint() const {
  nlohmann::json j = {{"vocab_size", model_cfg_.vocab_size},
                      {"hidden_size", model_cfg_.hidden_size},
                      {"intermediate_size", model_cfg_.intermediate_size},
                      {"num_hidden_layers", model_cfg_.num_hidden_layers},
                      {"num_attention_heads", model_cfg_.num_attention_heads},
                      {"num_key_value_heads", model_cfg_.num_key_value_heads}};
  // q / o adapter shapes follow head_dim: recorded when it is not hidden / heads (checkpoints of
  // other models keep their fingerprint)
  if (model_cfg_.head_dim() * model_cfg_.num_attention_heads != model_cfg_.hidden_size)
    j["head_dim"] = model_cfg_.head_dim();
  return j;
}

nlohmann::json Trainer::AdapterFingerprintOf(const AdapterRecord& r) {
  nlohmann::json j = {{"method", r.options.more ? "more" : "lora"},
                      {"rank", r.options.rank},
                      {"targets", fmt::format("{}", fmt::join(r.targets, ","))}};
  // the ablations' shapes, only when set
  if (!r.options.experts.empty()) j["experts"] = r.options.experts;
  if (r.options.shared_gate_input) j["gate_input"] = "shared";
  if (r.options.frozen_gate) j["gate"] = "frozen_at_init";  // one more tensor per module (E_gate)
  return j;
}

nlohmann::json Trainer::AdapterFingerprint() const {
  return AdapterFingerprintOf(AdapterRecordFromConfig(cfg_, task_names_));
}

std::vector<Trainer::GuardedChange> Trainer::GuardedChanges(const nlohmann::json& saved) const {
  const auto now = ConfigToJson(cfg_);
  const auto allowed = SplitList(cfg_.ckpt.allow_changes);
  const bool all = std::find(allowed.begin(), allowed.end(), "all") != allowed.end();
  std::vector<GuardedChange> out;
  for (const auto& key : ResumeGuardedKeys()) {
    const auto dot = key.find('.');
    const auto sec = key.substr(0, dot), k = key.substr(dot + 1);
    if (!saved.contains(sec) || !saved[sec].contains(k)) continue;  // written before the key existed
    if (saved[sec][k] == now[sec][k]) continue;
    out.push_back({key, saved[sec][k], now[sec][k],
                   all || std::find(allowed.begin(), allowed.end(), key) != allowed.end()});
  }
  return out;
}

AdapterRecord Trainer::ResumedRecord() const {
  auto rec = CheckpointAdapterRecord(resume_->state, resume_dir_);
  const auto before = rec;
  // a guarded setting that ckpt.allow_changes lets differ takes this run's value (CheckResumeConfig
  // refuses the others in MaybeResume)
  if (!resume_->state.contains("config")) return rec;
  for (const auto& change : GuardedChanges(resume_->state.at("config"))) {
    if (!change.allowed) continue;
    const auto& key = change.key;
    auto& o = rec.options;
    if (key == "adapter.scaling") o.scaling = cfg_.adapter.scaling;
    else if (key == "adapter.selection") o.soft = cfg_.adapter.selection == "soft";
    else if (key == "adapter.alpha") o.alpha = cfg_.adapter.alpha;
    else if (key == "adapter.tau") o.tau = cfg_.adapter.tau;
    else if (key == "adapter.task_emb_init") o.task_emb_init = cfg_.adapter.task_emb_init;
    else if (key == "adapter.task_emb_std") o.task_emb_std = cfg_.adapter.task_emb_std;
    else if (key == "data.tasks" && rec.tasks == task_names_) {
      o.active_tasks = TrainedTaskIds(cfg_, rec.tasks);
      if (cfg_.transfer.from.empty()) o.scale_tasks = static_cast<int64_t>(o.active_tasks.size());
    }
  }
  for (const auto& d : AdapterRecordDiff(before, rec))
    spdlog::warn("adapter record of '{}' changed on resume (ckpt.allow_changes): {}", resume_dir_, d);
  return rec;
}

std::string Trainer::SaveCheckpoint() {
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, torch::Tensor> optim;
  for (const auto& e : adapters_->entries()) {
    optim["m." + e.name] = opt_->m().narrow(0, e.offset, e.numel).view(e.shape);
    optim["v." + e.name] = opt_->v().narrow(0, e.offset, e.numel).view(e.shape);
  }
  if (grid_.is_world_root()) ckpt_->Prepare(step_);
  grid_.world().Barrier();
  if (grid_.is_stage_root()) ckpt_->WriteStage(step_, grid_.pp_rank(), adapters_->NamedTensors(), optim);
  grid_.world().Barrier();
  std::string dir;
  auto ranks = GatherTaskRanks();
  if (grid_.is_world_root()) {
    nlohmann::json state = {{"optimizer_t", opt_->t()},
                            {"sampler", loader_->State()},
                            {"model", ModelFingerprint()},
                            {"adapter_record", AdapterRecordToJson(record_)},
                            {"attention", AttentionName(attention_.impl)},
                            {"task_ranks", ranks},
                            {"skipped_steps", skipped_total_},
                            {"layout", {{"tp", grid_.layout().tp}, {"pp", grid_.layout().pp}, {"dp", grid_.layout().dp}}},
                            {"config", ConfigToJson(cfg_)}};
    dir = ckpt_->Commit(step_, state);
    spdlog::info("checkpoint {} written in {:.2f}s", dir,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  grid_.world().Barrier();
  return dir;
}

void Trainer::CheckResumeConfig(const nlohmann::json& saved, const std::string& ckpt) const {
  for (const auto& [key, was, is, allowed] : GuardedChanges(saved)) {
    if (allowed) {
      spdlog::warn("resuming '{}' with {} = {} (the checkpoint was trained with {}): allowed by ckpt.allow_changes",
                   ckpt, key, is.dump(), was.dump());
      continue;
    }
    throw Error(fmt::format("checkpoint '{}' was trained with {} = {} but this run sets {} = {}: resuming would "
                            "silently change the run", ckpt, key, was.dump(), key, is.dump()),
                fmt::format("resume with {} = {}, start a new run directory, or pass --ckpt.allow_changes={} to "
                            "change it deliberately", key, was.dump(), key));
  }
}

void Trainer::LoadTransfer() {
  auto loaded = CheckpointManager::Load(transfer_dir_);
  const auto& st = loaded.state;
  if (st.at("model") != ModelFingerprint())
    throw Error(fmt::format("transfer.from '{}' was written for another model ({}) than '{}' ({})", transfer_dir_,
                            st.at("model").dump(), cfg_.model.path, ModelFingerprint().dump()));
  const auto src_record = CheckpointAdapterRecord(st, transfer_dir_);
  if (AdapterFingerprintOf(src_record) != AdapterFingerprint())
    throw Error(fmt::format("transfer.from '{}' was written for adapters {} but this run configures {}", transfer_dir_,
                            AdapterFingerprintOf(src_record).dump(), AdapterFingerprint().dump()),
                "use the adapter.method/rank/targets of the source run");
  const auto& src = src_record.tasks;
  const auto pairs = cfg_.TransferPairs();
  std::vector<int64_t> rows;  // source row of E for each task of this run
  for (const auto& name : task_names_) {
    std::string from = name;
    for (const auto& [n, s] : pairs)
      if (n == name) from = s;
    auto it = std::find(src.begin(), src.end(), from);
    if (it == src.end())
      throw Error(from == name ? fmt::format("task '{}' of this run is not in the transfer checkpoint '{}' (it holds "
                                             "[{}]) and transfer.tasks names no source for it",
                                             name, transfer_dir_, fmt::join(src, ", "))
                               : fmt::format("transfer.tasks: source task '{}' (for '{}') is not in checkpoint '{}' "
                                             "(it holds [{}])", from, name, transfer_dir_, fmt::join(src, ", ")),
                  fmt::format("add --transfer.tasks={}=<one of {}>", name, fmt::join(src, ",")));
    rows.push_back(it - src.begin());
    spdlog::info("transfer: task '{}' starts from the embeddings of '{}'", name, from);
  }
  for (const auto& [n, s] : pairs)
    if (std::find(task_names_.begin(), task_names_.end(), n) == task_names_.end())
      throw Error(fmt::format("transfer.tasks names new task '{}' but this run's shards hold [{}]", n,
                              fmt::join(task_names_, ", ")));
  const auto index = torch::tensor(rows, torch::kLong);
  for (auto& [name, t] : loaded.adapters)
    if (name.size() > 2 && name.compare(name.size() - 2, 2, ".E") == 0 && !record_.options.shared_gate_input)
      t = t.index_select(0, index);  // [T_this_run, d]
  adapters_->LoadNamed(loaded.adapters, transfer_dir_);
  spdlog::info("transfer: adapters and gates from {} (optimizer, schedule and sampler start fresh)", transfer_dir_);
}

int64_t Trainer::MaybeResume() {
  if (!resume_) {  // a fresh run: from the transfer checkpoint, if one is given
    if (!transfer_dir_.empty()) LoadTransfer();
    adapters_->RefreshSelections();
    return 0;
  }
  const auto loaded = std::move(*resume_);  // read by the constructor (the adapter record)
  resume_.reset();
  const auto* latest = &resume_dir_;
  const auto& st = loaded.state;
  if (st.at("model") != ModelFingerprint())
    throw Error(fmt::format("checkpoint '{}' was written for another model ({}) than '{}' ({})", *latest,
                            st.at("model").dump(), cfg_.model.path, ModelFingerprint().dump()),
                "point ckpt.dir at this model's checkpoints or start a new run directory");
  const nlohmann::json adapter = AdapterFingerprint(), saved_adapter = AdapterFingerprintOf(record_);
  if (saved_adapter != adapter)
    throw Error(fmt::format("checkpoint '{}' was written for adapters {} but this run configures {}", *latest,
                            saved_adapter.dump(), adapter.dump()),
                "use the adapter.method/rank/targets of that run, or start a new run directory");
  if (record_.tasks != task_names_)
    throw Error(fmt::format("checkpoint '{}' was trained on tasks [{}] but the shards hold [{}]", *latest,
                            fmt::join(record_.tasks, ", "), fmt::join(task_names_, ", ")));
  CheckResumeConfig(st.at("config"), *latest);
  adapters_->LoadNamed(loaded.adapters, *latest);
  std::map<std::string, torch::Tensor> m, v;
  for (auto& [k, t] : loaded.optimizer) {
    if (k.rfind("m.", 0) == 0) m[k.substr(2)] = t;
    if (k.rfind("v.", 0) == 0) v[k.substr(2)] = t;
  }
  for (const auto& e : adapters_->entries()) {
    if (!m.count(e.name) || !v.count(e.name))
      throw Error(fmt::format("checkpoint '{}': optimizer state for '{}' is missing", *latest, e.name));
    opt_->m().narrow(0, e.offset, e.numel).copy_(m[e.name].reshape({-1}));
    opt_->v().narrow(0, e.offset, e.numel).copy_(v[e.name].reshape({-1}));
  }
  opt_->set_t(st.at("optimizer_t").get<int64_t>());
  loader_->LoadState(st.at("sampler"));
  skipped_total_ = st.value("skipped_steps", 0);
  step_ = st.at("step").get<int64_t>();
  adapters_->RefreshSelections();  // the loaded gates' expert choices, one host read
  spdlog::info("resumed from {} at step {}", *latest, step_);
  return step_;
}

}  // namespace more
