// The gate's expert choice cache (more_adapter.h, "THE selection"; adapter_set.h): the cached
// choice equals an independent recomputation, an optimizer step that flips the argmax is seen,
// a stale cache is never used, the STE gradients are those of the uncached computation, and a
// refresh of all modules is one host read.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "more/adapter/adapter_set.h"
#include "more/adapter/more_adapter.h"
#include "more/train/optimizer.h"
#include "gate_reference.h"

namespace more {
namespace {

constexpr int64_t kTasks = 5;

AdapterOptions Opts(int64_t rank, bool shared = false, std::vector<int64_t> experts = {}, bool soft = false,
                    bool more = true) {
  AdapterOptions o;
  o.more = more;
  o.rank = rank;
  o.num_tasks = kTasks;
  o.shared_gate_input = shared;
  o.experts = std::move(experts);
  o.soft = soft;
  o.seed = 5;
  return o;
}

// Modules of several shapes and modes: column and row, a shared gate input, subset experts, and a
// soft-selection and a LoRA module (nothing cached: they must not count or break the refresh).
std::unique_ptr<AdapterSet> MakeSet() {
  std::vector<std::unique_ptr<MoreAdapter>> v;
  v.push_back(std::make_unique<MoreAdapter>("layers.0.q", 16, 16, Opts(8), ParallelKind::kColumn, 0, 1));
  v.push_back(std::make_unique<MoreAdapter>("layers.0.down", 40, 16, Opts(8), ParallelKind::kRow, 0, 1));
  v.push_back(std::make_unique<MoreAdapter>("layers.0.k", 16, 8, Opts(4, true), ParallelKind::kColumn, 0, 1));
  v.push_back(std::make_unique<MoreAdapter>("layers.0.v", 16, 8, Opts(8, false, {2, 5, 8}), ParallelKind::kColumn, 0, 1));
  v.push_back(std::make_unique<MoreAdapter>("layers.0.o", 16, 16, Opts(8, false, {}, true), ParallelKind::kRow, 0, 1));
  v.push_back(std::make_unique<MoreAdapter>("layers.0.up", 16, 40, Opts(8, false, {}, false, false), ParallelKind::kColumn, 0, 1));
  return std::make_unique<AdapterSet>(std::move(v));
}

// Independent of the code under test: the logits of task t's gate input in long double on the
// host from plain copies of the parameters, the first maximum, and the gap to the runner-up.
struct Reference {
  int64_t k = -1;
  long double gap = 0;  // best - second best logit
};
Reference ReferenceChoice(const MoreAdapter& a, int task) {
  const int64_t row = a.options().shared_gate_input ? 0 : task;
  const auto logit = testing::ReferenceGateLogits(a.gate_w, a.gate_b, a.E).at(static_cast<size_t>(row));
  const auto n = static_cast<int64_t>(logit.size());
  Reference r;
  long double best = -std::numeric_limits<long double>::infinity(), second = best;
  for (int64_t k = 0; k < n; ++k) {
    const auto l = logit[static_cast<size_t>(k)];
    if (l > best) {
      second = best;
      best = l;
      r.k = k;
    } else if (l > second) {
      second = l;
    }
  }
  r.gap = best - second;
  return r;
}

TEST(SelectionCache, CachedChoiceEqualsAnIndependentRecomputationOverManyGateStates) {
  auto set = MakeSet();
  torch::manual_seed(3);
  int checked = 0, near_ties = 0;
  for (int state = 0; state < 200; ++state) {
    {
      torch::NoGradGuard ng;  // an in-place write of every parameter: every cache goes stale
      set->flat().copy_(torch::randn({set->numel()}) * (state % 2 ? 0.05 : 1.0));
    }
    const auto reads = set->selection_host_reads();
    EXPECT_EQ(set->RefreshSelections(), 4) << "the four hard-gate modules were stale";
    EXPECT_EQ(set->selection_host_reads(), reads + 1) << "one transfer for all modules";
    for (const auto& a : set->adapters()) {
      if (!a->HardGate()) continue;
      ASSERT_TRUE(a->SelectionCacheValid()) << a->name();
      for (int t = 0; t < kTasks; ++t) {
        const auto ref = ReferenceChoice(*a, t);
        const auto sel = a->Select(t);
        // the cached rank is the one every path reports
        EXPECT_EQ(sel.rank, a->ChosenRank(t));
        if (ref.gap < 1e-9L) {  // closer than fp64 can be trusted to order: not a fair comparison
          ++near_ties;
          continue;
        }
        ++checked;
        EXPECT_EQ(sel.rank, a->experts().at(static_cast<size_t>(ref.k))) << a->name() << " state " << state << " task " << t;
        // and it is the argmax of the forward's fp32 p_t where fp32 can resolve it (softmax is monotone)
        if (ref.gap > 1e-4L)
          EXPECT_EQ(sel.probs.argmax().item<int64_t>(), ref.k) << a->name() << " state " << state << " task " << t;
        EXPECT_DOUBLE_EQ(sel.weight.item<double>(), 1.0);
      }
    }
    EXPECT_EQ(set->selection_host_reads(), reads + 1) << "Select and ChosenRank read nothing from the device";
    EXPECT_EQ(set->RefreshSelections(), 0) << "nothing changed: no refresh, no read";
  }
  EXPECT_EQ(near_ties, 0);
  EXPECT_EQ(checked, 200 * 4 * kTasks);
}

// Exact and one-ulp ties: every path (refresh of the set, a module's own recomputation,
// ChosenRank, Select, MergedDelta's rank) computes the same selection; exact ties take the first
// expert, a one-ulp lead in fp32 is resolved exactly (fp64 logits of fp32 inputs).
TEST(SelectionCache, TiesAndNearTiesResolveTheSameOnEveryPath) {
  for (bool through_set : {true, false}) {
    auto set = MakeSet();
    auto* a = set->Find("layers.0.q");
    {
      torch::NoGradGuard ng;
      a->gate_w.zero_();
      a->gate_w.select(1, 0).fill_(0.5f);  // identical rows: equal products for every expert
      a->E.fill_(0.25f);
      a->gate_b.fill_(1.0f);
      a->gate_b[6] = std::nextafter(1.0f, 2.0f);  // task 0..4: expert 6 leads by one fp32 ulp
    }
    if (through_set) set->RefreshSelections();
    for (int t = 0; t < kTasks; ++t) EXPECT_EQ(a->ChosenRank(t), 7) << "task " << t;
    {
      torch::NoGradGuard ng;
      a->gate_b.fill_(1.0f);  // an exact tie of all experts
    }
    if (through_set) set->RefreshSelections();
    for (int t = 0; t < kTasks; ++t) {
      EXPECT_EQ(a->ChosenRank(t), 1) << "task " << t;
      EXPECT_EQ(a->Select(t).rank, 1) << "task " << t;
    }
    // the merged delta uses that rank: only A's first row contributes
    torch::NoGradGuard ng;
    a->B.normal_();
    const auto expect = torch::outer(a->B.select(1, 0), a->A[0]) * (16.0 / 8.0) * (1.0 / kTasks);
    EXPECT_TRUE(torch::allclose(a->MergedDelta(2), expect, 1e-6, 1e-7));
  }
  // the two paths are one computation: same answers on random states, bit for bit
  auto s1 = MakeSet(), s2 = MakeSet();
  torch::manual_seed(9);
  for (int i = 0; i < 20; ++i) {
    torch::NoGradGuard ng;
    const auto v = torch::randn({s1->numel()});
    s1->flat().copy_(v);
    s2->flat().copy_(v);
    s1->RefreshSelections();  // batched over modules
    for (size_t m = 0; m < s1->size(); ++m)
      for (int t = 0; t < kTasks; ++t)  // s2: each module on its own (its Select recomputes)
        EXPECT_EQ(s1->adapters()[m]->ChosenRank(t), s2->adapters()[m]->ChosenRank(t));
  }
}

// An optimizer step that moves gate_b across the decision boundary: the cache goes stale with
// the in-place update, the refresh reads once and reports the new expert; without the refresh,
// Select recomputes rather than use the old choice.
TEST(SelectionCache, AnOptimizerStepThatFlipsTheArgmaxIsSeen) {
  for (bool refresh : {true, false}) {
    std::vector<std::unique_ptr<MoreAdapter>> v;
    v.push_back(std::make_unique<MoreAdapter>("layers.0.q", 16, 16, Opts(4), ParallelKind::kColumn, 0, 1));
    AdapterSet set(std::move(v));
    auto* a = set.adapters().front().get();
    {
      torch::NoGradGuard ng;
      a->gate_w.zero_();
      a->gate_b.copy_(torch::tensor({0.02f, 0.0f, 0.0f, 0.0f}));
    }
    set.RefreshSelections();
    for (int t = 0; t < kTasks; ++t) ASSERT_EQ(a->ChosenRank(t), 1);
    const auto reads = set.selection_host_reads();
    // gradient: lower logit 0, raise logit 1 (AdamW's first step moves each by about lr)
    set.ZeroGrad();
    a->gate_b.grad().copy_(torch::tensor({1.0f, -1.0f, 0.0f, 0.0f}));
    FlatAdamW opt(set.numel(), AdamWOptions{});
    opt.Step(set.flat(), set.flat_grad(), set.decay_mask(), 0.1);
    EXPECT_FALSE(a->SelectionCacheValid()) << "the in-place update makes the cache stale";
    if (refresh) {
      EXPECT_EQ(set.RefreshSelections(), 1);
      EXPECT_EQ(set.selection_host_reads(), reads + 1);
    }
    for (int t = 0; t < kTasks; ++t) {
      EXPECT_EQ(a->ChosenRank(t), 2) << "task " << t;
      EXPECT_EQ(a->Select(t).rank, 2) << "task " << t;
      EXPECT_EQ(ReferenceChoice(*a, t).k, 1);
    }
    EXPECT_EQ(set.selection_host_reads(), reads + 1) << "either the refresh or the module's own read, once";
  }
}

// Changes that no refresh followed: an in-place edit of gate_w, gate_b or E, a write through
// another view of the flat buffer, a new tensor in place of the old one.
TEST(SelectionCache, AStaleCacheIsNeverUsed) {
  auto set = MakeSet();
  auto* a = set->Find("layers.0.q");
  torch::manual_seed(4);
  auto check = [&](const std::string& what) {
    for (int t = 0; t < kTasks; ++t)
      ASSERT_EQ(a->ChosenRank(t), ReferenceChoice(*a, t).k + 1) << what << " task " << t;
  };
  set->RefreshSelections();
  check("refreshed");
  auto flip = [&](torch::Tensor& t) {  // reverse the experts' order: a changed argmax for some task
    torch::NoGradGuard ng;
    t.copy_(t.flip({0}));
  };
  for (int round = 0; round < 3; ++round) {
    {
      torch::NoGradGuard ng;
      a->gate_w.normal_();  // in place through the module's own tensor
    }
    check("gate_w edited");
    flip(a->gate_w);
    check("gate_w flipped");
    {
      torch::NoGradGuard ng;
      a->gate_b.normal_(0.0, 10.0);  // the bias decides
    }
    check("gate_b edited");
    {
      torch::NoGradGuard ng;
      a->E.normal_(0.0, 10.0);
      a->gate_b.zero_();
    }
    check("E edited");
    {
      torch::NoGradGuard ng;  // through the flat buffer, not the module's tensors
      set->flat().copy_(torch::randn({set->numel()}));
    }
    check("flat buffer written");
  }
  // a new tensor (same version number, different identity) in place of gate_b
  const auto old_version = a->gate_b._version();
  auto fresh = torch::zeros_like(a->gate_b);
  {
    torch::NoGradGuard ng;
    fresh[3] = 100.0;
    while (fresh._version() < old_version) fresh.add_(0);  // equal version counts
  }
  ASSERT_EQ(fresh._version(), old_version);
  a->gate_b = fresh;
  check("gate_b replaced");
  EXPECT_EQ(a->ChosenRank(0), 4);
}

// The STE weight and every gradient of the adapter path equal the uncached computation
// (softmax, max, k.item(), as before the cache), for every task and many random states.
TEST(SelectionCache, SteGradientsEqualTheUncachedComputation) {
  torch::manual_seed(21);
  AdapterOptions o = Opts(6);
  o.alpha = 12.0;
  MoreAdapter a("layers.1.gate", 7, 9, o, ParallelKind::kColumn, 0, 1);
  for (int state = 0; state < 20; ++state) {
    for (auto& [n, t] : a.Params()) *t = torch::randn(t->sizes(), torch::kFloat64).requires_grad_(true);
    const auto x = torch::randn({3, 7}, torch::kFloat64);
    for (int t = 0; t < kTasks; ++t) {
      // the adapter (cached selection)
      for (auto& [n, p] : a.Params()) p->mutable_grad() = torch::Tensor();
      a.Delta(x, t, false).pow(2).sum().backward();
      // the uncached computation on copies of the same parameters
      auto A = a.A.detach().clone().requires_grad_(true), B = a.B.detach().clone().requires_grad_(true);
      auto E = a.E.detach().clone().requires_grad_(true), gw = a.gate_w.detach().clone().requires_grad_(true);
      auto gb = a.gate_b.detach().clone().requires_grad_(true);
      auto p = torch::softmax(torch::mv(gw, E[t]) + gb, 0);
      auto [pk, k] = p.max(0);
      const int64_t rt = k.item<int64_t>() + 1;
      auto ste = pk - pk.detach() + 1.0;
      auto w = ste * (12.0 / 6.0 * static_cast<double>(rt) / kTasks);
      auto u = torch::matmul(x, A.narrow(0, 0, rt).t()) * w;
      torch::matmul(u, B.narrow(1, 0, rt).t()).pow(2).sum().backward();
      ASSERT_EQ(a.ChosenRank(t), rt);
      const std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs = {
          {a.A.grad(), A.grad()}, {a.B.grad(), B.grad()}, {a.E.grad(), E.grad()}, {a.gate_w.grad(), gw.grad()},
          {a.gate_b.grad(), gb.grad()}};
      for (const auto& [got, want] : pairs)
        EXPECT_TRUE(torch::allclose(got, want, 1e-13, 1e-15)) << "state " << state << " task " << t;
      EXPECT_GT(a.gate_b.grad().abs().sum().item<double>(), 0.0);
    }
  }
}

}  // namespace
}  // namespace more
