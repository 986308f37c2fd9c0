// AdapterSet: every MoRE/LoRA adapter of this rank's pipeline stage, with all trainable
// tensors living as views in ONE flat fp32 buffer (and their gradients in one flat gradient
// buffer). That makes the per-step work one call each: one bucketed all-reduce over the
// stage's tp x dp group, one clip-norm, one fused AdamW update, one checkpoint blob.
//
// Parameter names: "<module>.<suffix>", e.g. "layers.3.q.A" (module names are global, so a
// checkpoint written under one pipeline layout loads under another).
//
// Expert selection cache (MoRE with the hard gate; see more_adapter.h, "THE selection"): each
// module caches its chosen expert per task on the host, keyed on the version counter of its
// gate and task embeddings. The parameters are views of flat(), so they share flat()'s version
// counter: the optimizer's in-place update and LoadNamed make every cache stale. RefreshSelections
// recomputes every stale module's choice on the device (MoreAdapter::ChooseExperts) and copies
// all of them to the host in ONE transfer ([sum over modules of rows of E] int64); the trainer
// calls it after each optimizer step (and before each step, where it is free when nothing
// changed). A module whose cache is stale anyway (a caller that changed parameters without a
// refresh) recomputes itself on its next Select: never stale, only slower.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "more/adapter/more_adapter.h"
#include "more/dist/process_grid.h"

namespace more {

class AdapterSet {
 public:
  // Takes ownership of the adapters (already initialised) and moves their tensors into the
  // flat buffers. Gradients accumulate in place into flat_grad().
  // Parameters, gradients and the decay mask live in flat fp32 buffers on `device`.
  explicit AdapterSet(std::vector<std::unique_ptr<MoreAdapter>> adapters, torch::Device device = torch::kCPU);

  MoreAdapter* Find(const std::string& module) const;  // nullptr if absent
  const std::vector<std::unique_ptr<MoreAdapter>>& adapters() const { return adapters_; }
  size_t size() const { return adapters_.size(); }

  torch::Tensor& flat() { return flat_; }               // [P] fp32
  torch::Tensor& flat_grad() { return flat_grad_; }     // [P] fp32
  const torch::Tensor& decay_mask() const { return decay_mask_; }  // [P] 1 = weight-decayed
  int64_t numel() const { return flat_.numel(); }
  // Elements of frozen gates (adapter.gate = frozen_at_init: gate_w, gate_b, E_gate), which
  // are stored with the rest but never change.
  int64_t frozen_numel() const;
  void ZeroGrad() { flat_grad_.zero_(); }

  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0, numel = 0;
  };
  const std::vector<Entry>& entries() const { return entries_; }

  // Sum of gradients over the stage's tp x dp group, divided by dp: partial TP gradients add
  // up, data-parallel replicas average. One flattened all-reduce.
  void SyncGrads(const ProcessGrid& grid);

  // Recomputes the expert choice of every module whose cache is stale, with one device-to-host
  // copy for all of them (none when every cache is valid). Returns the number of modules refreshed.
  int64_t RefreshSelections() const;
  // Device-to-host reads of expert choices so far: RefreshSelections' transfers plus the
  // modules' own recomputations of a stale cache.
  int64_t selection_host_reads() const;
  void InvalidateSelections() const;  // after writes that bypass the version counter

  // {module: [chosen rank per task]} (LoRA: the fixed rank for every task).
  nlohmann::json TaskRankMap(int num_tasks) const;
  // Modules of a task->rank map ({module: [rank per task]}) whose chosen rank is not the same
  // for all of `tasks` (the trained task ids): the modules where MoRE is task-dependent.
  static int64_t CountTaskDependent(const nlohmann::json& task_ranks, const std::vector<int>& tasks);

  // Named full tensors (views into the flat buffer / its gradient).
  std::map<std::string, torch::Tensor> NamedTensors() const;
  std::map<std::string, torch::Tensor> NamedGrads() const;
  // Copies values by name; every entry must be present with the same shape (error names it).
  void LoadNamed(const std::map<std::string, torch::Tensor>& values, const std::string& source);

 private:
  std::vector<std::unique_ptr<MoreAdapter>> adapters_;
  std::map<std::string, MoreAdapter*> by_name_;
  std::vector<Entry> entries_;
  torch::Tensor flat_, flat_grad_, decay_mask_;
  mutable int64_t refresh_reads_ = 0;  // RefreshSelections' host transfers
};

}  // namespace more
