#include "more/adapter/more_adapter.h"

#include <optional>

#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>

#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/parallel/tp_ops.h"

namespace more {
namespace {

uint64_t SeedFor(uint64_t seed, const std::string& name) {
  return seed * 0x9E3779B97F4A7C15ull ^ std::stoull(HashBytesHex(name.data(), name.size()), nullptr, 16);
}

}  // namespace

MoreAdapter::MoreAdapter(std::string name, int64_t d_in, int64_t d_out, const AdapterOptions& opt,
                         ParallelKind kind, int tp_rank, int tp_size)
    : name_(std::move(name)), d_in_(d_in), d_out_(d_out), opt_(opt), kind_(kind), tp_rank_(tp_rank),
      tp_size_(tp_size) {
  MORE_CHECK(opt.rank >= 1, "adapter {}: rank must be >= 1", name_);
  experts_ = opt.experts;
  if (experts_.empty())
    for (int64_t k = 1; k <= opt.rank; ++k) experts_.push_back(k);
  for (size_t i = 0; i < experts_.size(); ++i)
    MORE_CHECK(experts_[i] >= 1 && experts_[i] <= opt.rank && (i == 0 || experts_[i] > experts_[i - 1]),
               "adapter {}: experts must be ascending ranks in [1, {}]", name_, opt.rank);
  const auto n_exp = static_cast<int64_t>(experts_.size());
  MORE_CHECK(kind != ParallelKind::kColumn || d_out % tp_size == 0, "adapter {}: d_out {} % tp {}", name_,
             d_out, tp_size);
  MORE_CHECK(kind != ParallelKind::kRow || d_in % tp_size == 0, "adapter {}: d_in {} % tp {}", name_, d_in,
             tp_size);
  // The generator is seeded from (seed, module name) only: every rank of every layout
  // initialises the same full tensors.
  auto gen = at::detail::createCPUGenerator(SeedFor(opt.seed, name_));
  torch::NoGradGuard ng;
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_in));  // kaiming_uniform(a=sqrt(5))
  A = torch::empty({opt.rank, d_in}, torch::kFloat32).uniform_(-bound, bound, gen);
  B = torch::zeros({d_out, opt.rank}, torch::kFloat32);
  if (opt.more) {
    MORE_CHECK(opt.task_emb_init == "kaiming" || opt.task_emb_init == "normal",
               "adapter {}: task_emb_init '{}' (kaiming | normal)", name_, opt.task_emb_init);
    // kaiming: He-normal over fan_in = d_in (gain sqrt(2)): std = sqrt(2 / d_in)
    const double e_std = opt.task_emb_init == "kaiming" ? std::sqrt(2.0 / static_cast<double>(d_in)) : opt.task_emb_std;
    E = torch::empty({opt.shared_gate_input ? 1 : opt.num_tasks, d_in}, torch::kFloat32).normal_(0.0, e_std, gen);
    gate_w = torch::empty({n_exp, d_in}, torch::kFloat32).uniform_(-bound, bound, gen);
    gate_b = torch::empty({n_exp}, torch::kFloat32).uniform_(-bound, bound, gen);
    if (opt.frozen_gate) {
      MORE_CHECK(!opt.soft && !opt.shared_gate_input, "adapter {}: a frozen gate needs the hard gate over per-task "
                 "embeddings (selection ste, gate_input task)", name_);
      E_gate = E.clone();  // what the gate reads from now on; drawn from no generator, so the
                           // other tensors are those of a learned gate with the same seed
    }
  }
}

std::vector<std::pair<std::string, torch::Tensor*>> MoreAdapter::Params() {
  std::vector<std::pair<std::string, torch::Tensor*>> p{{"A", &A}, {"B", &B}};
  if (opt_.more) {
    p.emplace_back("E", &E);
    p.emplace_back("gate_w", &gate_w);
    p.emplace_back("gate_b", &gate_b);
    if (opt_.frozen_gate) p.emplace_back("E_gate", &E_gate);
  }
  return p;
}

int64_t MoreAdapter::GateRow(int task) const {
  MORE_CHECK(task >= 0 && task < opt_.num_tasks, "adapter {}: task id {} outside [0, {})", name_, task,
             opt_.num_tasks);
  return opt_.shared_gate_input ? 0 : task;
}

torch::Tensor MoreAdapter::ChooseExperts(const torch::Tensor& gate_w, const torch::Tensor& gate_b,
                                         const torch::Tensor& E) {
  torch::NoGradGuard ng;
  // logits [rows, n_experts] = E gate_w^T + gate_b in float64 (products of fp32 values are exact)
  auto logits = torch::addmm(gate_b.to(torch::kFloat64), E.to(torch::kFloat64), gate_w.to(torch::kFloat64).t());
  return logits.argmax(1);                                                 // [rows] long, first maximum
}

namespace {
int64_t VersionOf(const torch::Tensor& t) { return t.is_inference() ? -1 : static_cast<int64_t>(t._version()); }
}  // namespace

MoreAdapter::SelectionKey MoreAdapter::CurrentSelectionKey() const {
  const auto& e = GateInput();
  return {gate_w, gate_b, e, VersionOf(gate_w), VersionOf(gate_b), VersionOf(e)};
}

bool MoreAdapter::SelectionCacheValid() const {
  const auto& c = cache_key_;
  if (!HardGate() || cache_k_.empty() || !c.gate_w.defined()) return false;
  // inference tensors have no version counter (-1): never trusted
  const auto& e = GateInput();
  return c.gate_w.is_same(gate_w) && c.gate_b.is_same(gate_b) && c.E.is_same(e) && c.v_gate_w >= 0 &&
         c.v_gate_b >= 0 && c.v_E >= 0 && c.v_gate_w == VersionOf(gate_w) && c.v_gate_b == VersionOf(gate_b) &&
         c.v_E == VersionOf(e);
}

void MoreAdapter::SetSelectionCache(SelectionKey key, std::vector<int64_t> k) const {
  MORE_CHECK(HardGate(), "adapter {}: no expert selection to cache (LoRA or soft selection)", name_);
  MORE_CHECK(static_cast<int64_t>(k.size()) == GateInput().size(0), "adapter {}: {} cached choices for {} rows of E",
             name_, k.size(), GateInput().size(0));
  for (auto v : k)
    MORE_CHECK(v >= 0 && v < static_cast<int64_t>(experts_.size()), "adapter {}: expert index {} of {}", name_, v,
               experts_.size());
  cache_key_ = std::move(key);
  cache_k_ = std::move(k);
}

int64_t MoreAdapter::CachedExpert(int64_t row) const {
  if (!SelectionCacheValid()) {
    auto key = CurrentSelectionKey();                                      // before computing: the state it sees
    const auto k = ChooseExperts(gate_w, gate_b, GateInput()).to(torch::kCPU);  // one host read for this module
    ++host_reads_;
    const auto* p = k.data_ptr<int64_t>();
    SetSelectionCache(std::move(key), std::vector<int64_t>(p, p + k.numel()));
  }
  return cache_k_.at(static_cast<size_t>(row));
}

MoreAdapter::Selection MoreAdapter::Select(int task) const {
  Selection sel;
  if (!opt_.more) {
    sel.rank = opt_.rank;
    return sel;
  }
  const int64_t row = GateRow(task);
  // p_t = softmax(W_g e_t + b_g)                                            [n_experts]
  // (a frozen gate reads E_gate, for reading only: no STE, so nothing of the gate enters the graph)
  {
    std::optional<torch::NoGradGuard> ng;
    if (opt_.frozen_gate) ng.emplace();
    sel.probs = torch::softmax(torch::mv(gate_w, GateInput()[row]) + gate_b, 0);
  }
  if (opt_.frozen_gate) {  // the choice at init
    sel.rank = experts_.at(static_cast<size_t>(CachedExpert(row)));
    return sel;
  }
  if (opt_.soft) {
    sel.rank = opt_.rank;
    return sel;
  }
  const int64_t k = CachedExpert(row);                                     // THE selection (host int, no sync)
  sel.rank = experts_.at(static_cast<size_t>(k));
  auto pk = sel.probs[k];                                                  // p_t[k] (0-dim)
  sel.weight = pk - pk.detach() + 1.0;  // straight-through: value 1, d/dp = 1
  return sel;
}

int64_t MoreAdapter::ChosenRank(int task) const {
  if (!HardGate()) {
    if (opt_.more) GateRow(task);  // the task id check
    return opt_.rank;
  }
  return experts_.at(static_cast<size_t>(CachedExpert(GateRow(task))));
}

torch::Tensor MoreAdapter::ComponentWeights(const Selection& sel) const {
  const auto r = opt_.rank;
  const double base = opt_.alpha / static_cast<double>(r);
  const auto fo = A.options().requires_grad(false);  // fp32 in training; double in gradcheck tests
  if (!opt_.more) return torch::scalar_tensor(base, fo);
  const int64_t rt = sel.rank;
  const bool paper = opt_.scaling == "paper";
  // the STE weight (value 1); a frozen gate has none: 1 without a graph
  const auto ste = sel.weight.defined() ? sel.weight : torch::ones({}, fo);
  if (!opt_.soft && opt_.scaling != "per_component") {  // one factor for every component: 0-dim
    return ste * (base * (paper ? static_cast<double>(rt) / ScaleTasks() : 1.0));
  }
  // per-component factor ((j+1)/r)^2, j = 0..rt-1 (applied to both A and B)
  auto comp = torch::ones({rt}, fo);
  if (opt_.scaling == "per_component") {
    comp = torch::arange(1, rt + 1, fo) / static_cast<double>(r);
    comp = comp * comp;
  }
  if (opt_.soft) {
    // w_j = sum_{i: S_i > j} p_i s(S_i) = (p * s(S)) @ M, M[i][j] = [j < S_i]   ([n_experts] x [n_experts, r])
    const auto n_exp = static_cast<int64_t>(experts_.size());
    auto sizes = torch::tensor(experts_, torch::kLong).to(fo.dtype()).to(A.device());             // [n_experts]
    auto s = paper ? sizes / ScaleTasks() : torch::ones({n_exp}, fo);
    auto m = (torch::arange(r, fo).unsqueeze(0) < sizes.unsqueeze(1)).to(fo.dtype());               // [n_experts, r]
    auto w = torch::matmul(sel.probs * s, m);                                                     // [r]
    return w * comp * base;
  }
  const double s = paper ? static_cast<double>(rt) / ScaleTasks() : 1.0;
  return ste * (comp * (base * s));
}

MoreAdapter::Factors MoreAdapter::FactorsFor(int task, bool training) const {
  const auto sel = Select(task);
  const int64_t rt = sel.rank;
  Factors f;
  f.w = ComponentWeights(sel);                                             // [rt] or 0-dim
  f.dropout = training ? opt_.dropout : 0.0;
  f.a = A.narrow(0, 0, rt);                                                // [rt, d_in]
  f.b = B.narrow(1, 0, rt);                                                // [d_out, rt]
  if (kind_ == ParallelKind::kRow && tp_size_ > 1) {
    const int64_t n = d_in_ / tp_size_;
    f.a = f.a.narrow(1, tp_rank_ * n, n);                                  // [rt, d_in/tp]
  }
  if (kind_ == ParallelKind::kColumn && tp_size_ > 1) {
    const int64_t n = d_out_ / tp_size_;
    f.b = f.b.narrow(0, tp_rank_ * n, n);                                  // [d_out/tp, rt]
  }
  return f;
}

torch::Tensor MoreAdapter::Delta(const torch::Tensor& x, int task, bool training) const {
  const auto f = FactorsFor(task, training);
  auto xd = x.scalar_type() == A.scalar_type() ? x : x.to(A.scalar_type());
  if (f.dropout > 0) xd = torch::dropout(xd, f.dropout, true);
  auto u = torch::matmul(xd, f.a.t()) * f.w;                               // [.., rt]
  return torch::matmul(u, f.b.t());                                        // [.., d_out(/tp)]
}

torch::Tensor MeanPoolWeights(const torch::Tensor& mask, torch::ScalarType dtype) {
  auto m = mask.to(dtype);                                                 // [B, S]
  return (m / m.sum(1, true).clamp_min(1.0)).unsqueeze(1);                 // [B, 1, S]
}

torch::Tensor MeanPool(const torch::Tensor& x, const torch::Tensor& weights) {
  auto xf = x.scalar_type() == weights.scalar_type() ? x : x.to(weights.scalar_type());
  return torch::bmm(weights, xf).squeeze(1);                               // [B, d]
}

torch::Tensor MoreAdapter::ContrastiveLoss(const torch::Tensor& x, const torch::Tensor& mask, int task,
                                           const Communicator& tp) const {
  return ContrastiveLossPooled(MeanPool(x, MeanPoolWeights(mask, A.scalar_type())), task, tp);
}

torch::Tensor MoreAdapter::ContrastiveLossPooled(const torch::Tensor& pooled, int task,
                                                 const Communicator& tp) const {
  return ContrastiveLossBatch({this}, {pooled}, task, tp)[0];
}

std::string MoreAdapter::ContrastiveBatchKey(const torch::Tensor& pooled) const {
  const bool split = tp_size_ > 1;
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", pooled.size(1), c10::toString(pooled.scalar_type()), opt_.tau,
                     E.size(0), fmt::join(opt_.active_tasks, ","), split ? static_cast<int>(kind_) : -1,
                     c10::toString(E.scalar_type()));
}

torch::Tensor MoreAdapter::ContrastiveLossBatch(const std::vector<const MoreAdapter*>& mods,
                                                const std::vector<torch::Tensor>& pooled, int task,
                                                const Communicator& tp) {
  MORE_CHECK(!mods.empty() && mods.size() == pooled.size(), "contrastive batch: {} modules, {} inputs", mods.size(),
             pooled.size());
  const auto& first = *mods.front();
  const auto key = first.ContrastiveBatchKey(pooled.front());
  std::vector<torch::Tensor> zs, es;
  for (size_t m = 0; m < mods.size(); ++m) {
    const auto& a = *mods[m];
    MORE_CHECK(a.opt_.more, "adapter {}: contrastive loss needs task embeddings (method = more)", a.name_);
    MORE_CHECK(!a.opt_.shared_gate_input, "adapter {}: no contrastive loss with a shared gate input (one E row)",
               a.name_);
    MORE_CHECK(a.ContrastiveBatchKey(pooled[m]) == key, "adapter {}: not batchable with {}", a.name_, first.name_);
    zs.push_back(pooled[m].to(a.A.scalar_type()));                        // [B, d(/tp)]
    auto e = a.E;
    if (a.kind_ == ParallelKind::kRow && a.tp_size_ > 1) {
      const int64_t n = a.d_in_ / a.tp_size_;
      e = e.narrow(1, a.tp_rank_ * n, n);                                  // [T, d/tp]
    }
    es.push_back(e);
  }
  auto z = torch::stack(zs), e = torch::stack(es);                         // [M, B, d], [M, T, d]
  auto dots = torch::bmm(z, e.transpose(1, 2));                            // [M, B, T]
  auto zn2 = (z * z).sum(-1);                                              // [M, B]
  auto en2 = (e * e).sum(-1);                                              // [M, T]
  const bool row_split = first.kind_ == ParallelKind::kRow && first.tp_size_ > 1;
  if (row_split) {  // one all-reduce for the group
    const auto nd = dots.numel(), nz = zn2.numel(), ne = en2.numel();
    auto packed = ReduceFromTp(torch::cat({dots.flatten(), zn2.flatten(), en2.flatten()}), tp);
    dots = packed.narrow(0, 0, nd).view(dots.sizes());
    zn2 = packed.narrow(0, nd, nz).view(zn2.sizes());
    en2 = packed.narrow(0, nd + nz, ne).view(en2.sizes());
  }
  auto cos = dots / (zn2.sqrt().unsqueeze(2) * en2.sqrt().unsqueeze(1)).clamp_min(1e-8);  // [M, B, T]
  int64_t label = task;
  const auto& active = first.opt_.active_tasks;
  if (!active.empty()) {
    auto it = std::find(active.begin(), active.end(), static_cast<int64_t>(task));
    MORE_CHECK(it != active.end(), "adapter {}: task {} is not among the trained tasks", first.name_, task);
    label = it - active.begin();
    cos = cos.index_select(2, torch::tensor(active, torch::kLong).to(cos.device()));  // [M, B, T_active]
  }
  const int64_t nm = cos.size(0), nb = cos.size(1);
  auto labels = torch::full({nm * nb}, label, torch::TensorOptions(torch::kLong).device(cos.device()));
  auto loss = torch::nn::functional::cross_entropy(
                  (cos / first.opt_.tau).reshape({nm * nb, -1}), labels,
                  torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                  .view({nm, nb})
                  .mean(1);                                                // [M]
  if (first.kind_ == ParallelKind::kColumn && first.tp_size_ > 1) {
    const double t = first.tp_size_;
    loss = loss / t + (loss - loss / t).detach();
  }
  return loss;
}

torch::Tensor MoreAdapter::MergedDelta(int task) const {
  torch::NoGradGuard ng;
  const auto sel = Select(task);
  auto w = ComponentWeights(sel);                                          // [rt] or 0-dim
  const int64_t rt = sel.rank;
  return torch::matmul(B.narrow(1, 0, rt) * w, A.narrow(0, 0, rt));        // [d_out, d_in]
}

}  // namespace more
