#include "more/adapter/adapter_set.h"

#include "more/core/error.h"

namespace more {

AdapterSet::AdapterSet(std::vector<std::unique_ptr<MoreAdapter>> adapters, torch::Device device)
    : adapters_(std::move(adapters)) {
  int64_t total = 0;
  for (auto& a : adapters_) {
    by_name_[a->name()] = a.get();
    for (auto& [suffix, t] : a->Params()) {
      entries_.push_back({a->name() + "." + suffix, t->sizes().vec(), total, t->numel()});
      total += t->numel();
    }
  }
  const auto fo = torch::TensorOptions(torch::kFloat32).device(device);
  flat_ = torch::zeros({total}, fo);
  flat_grad_ = torch::zeros({total}, fo);
  decay_mask_ = torch::zeros({total}, fo);
  size_t i = 0;
  for (auto& a : adapters_) {
    for (auto& [suffix, t] : a->Params()) {
      const auto& e = entries_[i++];
      auto view = flat_.narrow(0, e.offset, e.numel).view(e.shape);
      {
        torch::NoGradGuard ng;
        view.copy_(*t);
      }
      *t = view.detach().requires_grad_(true);  // leaf sharing storage with flat_
      t->mutable_grad() = flat_grad_.narrow(0, e.offset, e.numel).view(e.shape);
      // decoupled weight decay on the low-rank factors and gate weights, not on E or biases (nor on
      // a frozen gate, which keeps its initial values)
      const bool decayed = suffix == "A" || suffix == "B" || (suffix == "gate_w" && !a->options().frozen_gate);
      if (decayed) decay_mask_.narrow(0, e.offset, e.numel).fill_(1.0);
    }
  }
}

int64_t AdapterSet::frozen_numel() const {
  int64_t n = 0;
  for (const auto& a : adapters_)
    if (a->options().frozen_gate) n += a->gate_w.numel() + a->gate_b.numel() + a->E_gate.numel();
  return n;
}

MoreAdapter* AdapterSet::Find(const std::string& module) const {
  auto it = by_name_.find(module);
  return it == by_name_.end() ? nullptr : it->second;
}

void AdapterSet::SyncGrads(const ProcessGrid& grid) {
  if (grid.stage().size() == 1) return;
  grid.stage().AllReduceSum(flat_grad_);
  if (grid.layout().dp > 1) flat_grad_.div_(static_cast<double>(grid.layout().dp));
}

int64_t AdapterSet::RefreshSelections() const {
  std::vector<MoreAdapter*> stale;
  std::vector<MoreAdapter::SelectionKey> keys;
  std::vector<torch::Tensor> chosen;  // [rows of E] long each, on the device
  for (const auto& a : adapters_) {
    if (!a->HardGate() || a->SelectionCacheValid()) continue;
    keys.push_back(a->CurrentSelectionKey());  // the state the choice below is computed from
    chosen.push_back(MoreAdapter::ChooseExperts(a->gate_w, a->gate_b, a->GateInput()));
    stale.push_back(a.get());
  }
  if (stale.empty()) return 0;
  const auto host = torch::cat(chosen).to(torch::kCPU);  // the one device-to-host transfer
  ++refresh_reads_;
  const auto* p = host.data_ptr<int64_t>();
  for (size_t i = 0; i < stale.size(); ++i) {
    const auto n = chosen[i].numel();
    stale[i]->SetSelectionCache(std::move(keys[i]), std::vector<int64_t>(p, p + n));
    p += n;
  }
  return static_cast<int64_t>(stale.size());
}

int64_t AdapterSet::selection_host_reads() const {
  int64_t n = refresh_reads_;
  for (const auto& a : adapters_) n += a->selection_host_reads();
  return n;
}

void AdapterSet::InvalidateSelections() const {
  for (const auto& a : adapters_) a->InvalidateSelection();
}

nlohmann::json AdapterSet::TaskRankMap(int num_tasks) const {
  RefreshSelections();  // one host read for the whole map when anything changed
  nlohmann::json j = nlohmann::json::object();
  for (const auto& a : adapters_) {
    std::vector<int64_t> ranks;
    for (int t = 0; t < num_tasks; ++t) ranks.push_back(a->ChosenRank(t));
    j[a->name()] = ranks;
  }
  return j;
}

int64_t AdapterSet::CountTaskDependent(const nlohmann::json& task_ranks, const std::vector<int>& tasks) {
  int64_t n = 0;
  for (const auto& [module, per_task] : task_ranks.items()) {
    bool differs = false;
    for (int t : tasks) differs = differs || per_task.at(t) != per_task.at(tasks.front());
    n += differs ? 1 : 0;
  }
  return n;
}

std::map<std::string, torch::Tensor> AdapterSet::NamedTensors() const {
  std::map<std::string, torch::Tensor> m;
  for (const auto& e : entries_) m[e.name] = flat_.narrow(0, e.offset, e.numel).view(e.shape);
  return m;
}

std::map<std::string, torch::Tensor> AdapterSet::NamedGrads() const {
  std::map<std::string, torch::Tensor> m;
  for (const auto& e : entries_) m[e.name] = flat_grad_.narrow(0, e.offset, e.numel).view(e.shape);
  return m;
}

void AdapterSet::LoadNamed(const std::map<std::string, torch::Tensor>& values, const std::string& source) {
  torch::NoGradGuard ng;
  for (const auto& e : entries_) {
    auto it = values.find(e.name);
    if (it == values.end())
      throw Error(fmt::format("{}: adapter tensor '{}' is missing", source, e.name),
                  "the checkpoint was written for another model, adapter method or target list");
    if (it->second.sizes().vec() != e.shape)
      throw Error(fmt::format("{}: adapter tensor '{}' has shape {} but this run expects {}", source, e.name,
                              fmt::join(it->second.sizes().vec(), "x"), fmt::join(e.shape, "x")),
                  "the checkpoint was written for another model or adapter rank/task count");
    flat_.narrow(0, e.offset, e.numel).copy_(it->second.reshape({-1}).to(torch::kFloat32));
  }
}

}  // namespace more
