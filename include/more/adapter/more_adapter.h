// MoRE adapter of one linear layer W0: [d_out, d_in] (paper: "MoRE: A Mixture of Low-Rank
// Experts for Adaptive Multi-Task Learning"). One LoRA of maximum rank r; expert k (k = 1..r)
// is the first k rows of A and the first k columns of B. A gate over learned task embeddings
// picks one expert per task.
//
// Parameters (fp32, full copies replicated on every rank of the stage):
//   A [r, d_in]  Kaiming-uniform       B [d_out, r]  zeros
//   E [T, d_in]  task_emb_init: "kaiming" N(0, 2/d_in) (the paper, Sec. 4.1; PyTorch's
//                kaiming_normal_ defaults: fan_in = d_in, gain sqrt(2)) | "normal" N(0, std^2)
//   gate_w [r, d_in], gate_b [r]  (nn.Linear init)
// Forward for a micro-batch of task t (batches are single-task):
//   p_t = softmax(gate_w e_t + gate_b)                         [r]
//   k   = argmax p_t,  r_t = k + 1      (THE selection below decides k)
//   ste = p_t[k] - stopgrad(p_t[k]) + 1                        value 1, gradient to gate and E
//   h   = W0 x + ste * s(r_t) * alpha/r * B[:, :r_t] A[:r_t, :] dropout(x)
//   s(r_t) = r_t / |T| ("paper", Eq. 6) | 1 ("none"); |T| = scale_tasks, the number of tasks
//   being trained (data.tasks), which may be fewer than the rows of E (the shards' tasks);
//   "per_component": component j (0-based) of A and of B scaled by (j+1)/r (public code's form).
// Only r_t ranks are multiplied, so a step costs less than a rank-r LoRA.
// selection = "soft" (ablation, no STE): h = W0 x + alpha/r * sum_k p_k s(k) expert_k(x), i.e.
// component j weighted by w_j = sum_{k >= j} p_k s(k+1).
// Ablations of the paper's Table 5:
//   experts = S (a subset of the ranks 1..r, ascending; "w/ subset experts"): the gate has |S|
//     outputs and expert i is the first S_i ranks; soft: w_j = sum_{i: S_i > j} p_i s(S_i).
//   shared_gate_input ("w/o task embeddings"): E has one row, a learned input shared by all
//     tasks, so every task chooses the same expert; no contrastive loss (it needs one e_t per task).
// frozen_gate (adapter.gate = frozen_at_init; the paper's released code): the gate reads
//   E_gate [T, d_in], a copy of E made at init that never trains, so k_t is the gate's choice at
//   initialisation and never changes; there is no STE factor (h uses weight 1 without a graph),
//   so gate_w, gate_b and E_gate get no gradient and keep their initial values (AdamW leaves a
//   tensor with zero gradient unchanged; they are not weight-decayed). E still trains through
//   the contrastive loss, as in the released code. The three frozen tensors are saved with the
//   others, so every checkpoint and export recomputes the same choice.
// method = "lora" (baseline): fixed rank r, no gate, no E, scale alpha/r.
//
// THE selection (hard gate): k_t = argmax_k (gate_w E^T + gate_b)[t, k], the logits of every
// row of E in float64 on the parameters' device (ChooseExperts; fp32 inputs, so each product is
// exact and only the sum rounds: the answer is the exact argmax except for logits closer than
// ~1e-15 relative), first index on ties. Softmax is monotone, so this is argmax p_t. Every path
// uses it: Select (forward), ChosenRank (task->rank maps, checkpoints), MergedDelta and export;
// every rank of a data-parallel or tensor-parallel group computes it on the same replicated
// parameters with the same kernels, so ties and near-ties cannot split a group.
// The chosen k per row of E is cached on the host: Select reads no device value (on a GPU, no
// sync), and indexes p_t with the cached k for the STE weight, so gradients are unchanged.
// The cache is keyed on the identity and autograd version counter (_version()) of gate_w, gate_b
// and E: any in-place change (the optimizer step, LoadNamed, a checkpoint or PEFT import,
// a test's edit) or a new tensor makes it stale, and a stale cache is never used: Select then
// recomputes THE selection of this module (one host read, counted in selection_host_reads()).
// AdapterSet::RefreshSelections() refreshes every stale module with ONE host read (the trainer
// calls it after each optimizer step and before each step). Writes that bypass the version
// counter (raw data pointers, Tensor::data()) must call InvalidateSelection().
//
// Contrastive loss of the module (Eq. 8 with its minus sign):
//   z_i = mean of x_i over non-pad tokens;  L_con = CE_k( cos(z_i, e_k) / tau ; label t ),
//   k over the tasks being trained (active_tasks): tasks left out by data.tasks are no negatives.
//
// Tensor parallelism (adapter copies stay full; the base weight is sharded):
//   column-parallel (q,k,v,gate,up): x is full; this rank's output slice uses B[rows_tp, :].
//   row-parallel (o, down): x is this rank's input slice; the partial product
//     (x_tp A[:, cols_tp]^T) B^T is added to the partial base output BEFORE the row-parallel
//     all-reduce, which then sums it exactly (no extra collective). The contrastive cosine
//     all-reduces partial dot products and squared norms ([B, T] + [B] + [T]).
//   Gradients of A, B, E, gate are partial per TP rank and are summed by the stage's
//   all-reduce; terms computed redundantly on every TP rank (the column-parallel contrastive
//   loss) are scaled by 1/tp in backward so that sum stays exact.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "more/dist/communicator.h"

namespace more {

enum class ParallelKind { kColumn, kRow };

struct AdapterOptions {
  bool more = true;               // false: plain LoRA of fixed rank
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  std::string scaling = "paper";  // paper | none | per_component
  bool soft = false;              // soft selection ablation (no STE)
  int64_t num_tasks = 1;           // rows of E: every task of the shards (ids are shard ids)
  int64_t scale_tasks = 0;         // |T| of s(r_t) = r_t/|T|: the tasks being trained; 0 = num_tasks
  std::vector<int64_t> active_tasks;  // ids of the tasks being trained: the contrastive classes;
                                      // empty = all num_tasks
  double tau = 0.05;
  std::vector<int64_t> experts;    // the ranks that are experts (ascending, in 1..r); empty = 1..r
  bool shared_gate_input = false;  // E has one row for every task (ablation)
  bool frozen_gate = false;        // the gate reads E_gate (E at init, untrained); no STE
  std::string task_emb_init = "kaiming";  // kaiming | normal
  double task_emb_std = 0.01;             // std of "normal"
  uint64_t seed = 0;              // init seed; each module mixes in its name, so init does not
                                  // depend on the parallel layout
};

// Mean over real tokens as one batched GEMM: weights [B, 1, S] = mask / count (dtype),
// MeanPool(x [B, S, d], weights) -> [B, d] in the weights' dtype.
torch::Tensor MeanPoolWeights(const torch::Tensor& mask, torch::ScalarType dtype);
torch::Tensor MeanPool(const torch::Tensor& x, const torch::Tensor& weights);

class MoreAdapter {
 public:
  MoreAdapter(std::string name, int64_t d_in, int64_t d_out, const AdapterOptions& opt,
              ParallelKind kind, int tp_rank, int tp_size);

  const std::string& name() const { return name_; }
  // Trainable tensors in a fixed order: (suffix, tensor&), e.g. ("A", A).
  std::vector<std::pair<std::string, torch::Tensor*>> Params();

  struct Selection {
    int64_t rank = 0;        // r_t (1-based); r for LoRA
    torch::Tensor weight;    // STE scalar (value 1) or undefined (LoRA / soft)
    torch::Tensor probs;     // p_t [n_experts] (MoRE; n_experts = r unless adapter.experts)
  };
  Selection Select(int task) const;
  int64_t ChosenRank(int task) const;

  // THE selection: expert index per row of E, [E.size(0)] long on the parameters' device (no host
  // read). gate_w [n_experts, d], gate_b [n_experts], E [rows, d]; float64 logits, argmax (first).
  static torch::Tensor ChooseExperts(const torch::Tensor& gate_w, const torch::Tensor& gate_b,
                                     const torch::Tensor& E);
  bool HardGate() const { return opt_.more && !opt_.soft; }  // MoRE with an argmax (the cached case)
  // The rows the gate reads: E, or E_gate with a frozen gate (see the header comment).
  const torch::Tensor& GateInput() const { return opt_.frozen_gate ? E_gate : E; }
  // The cache of the chosen expert per row of E (hard gate only; see the header comment).
  struct SelectionKey {
    torch::Tensor gate_w, gate_b, E;  // the tensors the choice was computed from (identity; E: GateInput())
    int64_t v_gate_w = -1, v_gate_b = -1, v_E = -1;  // and their _version()s then
  };
  SelectionKey CurrentSelectionKey() const;
  bool SelectionCacheValid() const;                  // false for LoRA / soft (nothing cached)
  // Stores k (one expert index per row of E) computed from the parameters described by `key`.
  void SetSelectionCache(SelectionKey key, std::vector<int64_t> k) const;
  void InvalidateSelection() const { cache_k_.clear(); cache_key_ = {}; }
  int64_t selection_host_reads() const { return host_reads_; }  // recomputations by this module

  // The pieces of the adapter path for task t on this rank:
  //   Delta(x) = ((dropout_p(x) a^T) * w) b^T
  struct Factors {
    torch::Tensor a;      // [r_t, d_in(/tp)]: a view of A (the rank's columns if row-parallel)
    torch::Tensor b;      // [d_out(/tp), r_t]: a view of B (the rank's rows if column-parallel)
    torch::Tensor w;      // [r_t] or 0-dim: ComponentWeights (STE / soft mixing / scaling)
    double dropout = 0;   // probability applied to x (0 outside training)
  };
  Factors FactorsFor(int task, bool training) const;

  // Adapter contribution to this rank's (partial, for row-parallel) output.
  // x: [.., d_in] (column) or [.., d_in/tp] (row); returns [.., d_out/tp] (column) or
  // [.., d_out] partial (row); fp32.
  torch::Tensor Delta(const torch::Tensor& x, int task, bool training) const;
  // Per-module contrastive loss (scalar). x as in Delta; mask [B, S] (1 = real token).
  torch::Tensor ContrastiveLoss(const torch::Tensor& x, const torch::Tensor& mask, int task,
                                const Communicator& tp) const;
  // The same from the mean-pooled input z [B, d(/tp)] = MeanPool(x, MeanPoolWeights(mask)):
  // modules that read the same x (q/k/v, gate/up) share one pooling (LoraLinearPooled).
  // ContrastiveLossBatch with this module alone.
  torch::Tensor ContrastiveLossPooled(const torch::Tensor& pooled, int task, const Communicator& tp) const;
  // The same for M modules at once: losses [M], element m the loss of module m on pooled[m]
  // (equal to it computed alone, up to summation order). The modules must
  // agree on the pooled width, tau, the rows of E, the trained tasks and (with tp > 1) their
  // parallel kind (ContrastiveBatchKey); one batched computation, and with a row split one
  // all-reduce, instead of ~15 small operations and one all-reduce per module.
  static torch::Tensor ContrastiveLossBatch(const std::vector<const MoreAdapter*>& mods,
                                            const std::vector<torch::Tensor>& pooled, int task,
                                            const Communicator& tp);
  std::string ContrastiveBatchKey(const torch::Tensor& pooled) const;  // modules that may share a batch
  double ScaleTasks() const {  // |T| of s(r_t)
    return static_cast<double>(opt_.scale_tasks > 0 ? opt_.scale_tasks : opt_.num_tasks);
  }
  // Full merged update for task t: dW [d_out, d_in] with W0 + dW == the adapter path.
  torch::Tensor MergedDelta(int task) const;

  const std::vector<int64_t>& experts() const { return experts_; }  // ranks, ascending
  int64_t d_in() const { return d_in_; }
  int64_t d_out() const { return d_out_; }
  const AdapterOptions& options() const { return opt_; }

  torch::Tensor A, B, E, gate_w, gate_b;  // see the header comment for shapes
  torch::Tensor E_gate;                   // [T, d_in], frozen_gate only: E at init

 private:
  // Per-component weights w [r_used] applied to the rank-space product (includes s, alpha/r,
  // per-component scaling, soft-selection mixing, STE); a 0-dim tensor when every component
  // has the same factor (LoRA; hard selection without per-component scaling).
  torch::Tensor ComponentWeights(const Selection& sel) const;
  // Cached k for a row of E; a stale cache is recomputed first (one host read for this module).
  int64_t CachedExpert(int64_t row) const;
  int64_t GateRow(int task) const;  // row of E read by task (0 with a shared gate input)
  mutable SelectionKey cache_key_;
  mutable std::vector<int64_t> cache_k_;  // [rows of E] expert index (0-based), empty = none
  mutable int64_t host_reads_ = 0;
  std::string name_;
  int64_t d_in_, d_out_;
  AdapterOptions opt_;
  ParallelKind kind_;
  int tp_rank_, tp_size_;
  std::vector<int64_t> experts_;  // expert i = the first experts_[i] ranks
};

}  // namespace more
