// MoRE adapter: the STE reaches the gate and task embeddings, only r_t ranks are used, scaling
// modes, merged weights equal the adapter path, and finite-difference gradient checks in double.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "more/adapter/more_adapter.h"
#include "more/core/error.h"
#include "more/dist/process_grid.h"
#include "more/parallel/adapted_linear.h"

namespace more {
namespace {

constexpr int64_t kIn = 6, kOut = 5, kRank = 4, kTasks = 3;

MoreAdapter MakeAdapter(const std::string& scaling = "paper", bool soft = false, bool more = true,
                        double dropout = 0.0) {
  AdapterOptions o;
  o.dropout = dropout;
  o.more = more;
  o.rank = kRank;
  o.alpha = 8.0;
  o.scaling = scaling;
  o.soft = soft;
  o.num_tasks = kTasks;
  o.seed = 3;
  MoreAdapter a("layers.0.q", kIn, kOut, o, ParallelKind::kColumn, 0, 1);
  torch::manual_seed(11);
  // B starts at zero; give it values so every path carries gradient. Double, leaf tensors.
  a.B = torch::randn({kOut, kRank}, torch::kFloat64);
  for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
  return a;
}

// Pins the gate so that task t chooses rank ranks[t] (1-based): E[t] lights feature t and
// feature t votes for expert ranks[t]-1; every other logit stays at 0. Keeps B non-zero.
void ForceRanks(MoreAdapter& a, const std::vector<int64_t>& ranks) {
  torch::NoGradGuard ng;
  a.gate_w.zero_();
  a.gate_b.zero_();
  a.E.zero_();
  for (size_t t = 0; t < ranks.size(); ++t) {
    a.E[t][t] = 3.0;
    a.gate_w[ranks[t] - 1][t] = 3.0;
  }
}

// The tasks' ranks used by the fixtures below: all >= 2 and not all equal.
const std::vector<int64_t> kForced = {2, 3, 4};

void ZeroGrads(MoreAdapter& a) {
  for (auto& [n, t] : a.Params()) t->mutable_grad() = torch::Tensor();
}

TEST(MoreAdapter, SteGradientReachesGateAndTaskEmbedding) {
  auto a = MakeAdapter();
  auto x = torch::randn({2, 3, kIn}, torch::kFloat64);
  const int task = 1;
  a.Delta(x, task, false).pow(2).sum().backward();
  ASSERT_TRUE(a.gate_w.grad().defined());
  EXPECT_GT(a.gate_w.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(a.gate_b.grad().abs().sum().item<double>(), 0.0);
  auto ge = a.E.grad();
  EXPECT_GT(ge[task].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(ge[0].abs().sum().item<double>(), 0.0);  // other tasks' embeddings untouched
  EXPECT_EQ(ge[2].abs().sum().item<double>(), 0.0);
}

TEST(MoreAdapter, SteValueIsOneAndGradientIsTheChosenProbability) {
  auto a = MakeAdapter();
  auto sel = a.Select(0);
  EXPECT_DOUBLE_EQ(sel.weight.item<double>(), 1.0);
  sel.weight.backward();
  // d ste / d logits = d p_k / d logits = p_k (onehot_k - p)
  auto p = sel.probs.detach();
  const int64_t k = sel.rank - 1;
  auto dlogit = p[k] * (torch::one_hot(torch::tensor(k), kRank).to(torch::kFloat64) - p);
  EXPECT_TRUE(torch::allclose(a.gate_b.grad(), dlogit, 1e-12, 1e-12));
}

TEST(MoreAdapter, OnlyChosenRanksAreUsed) {
  for (int task = 0; task < kTasks; ++task) {
    auto a = MakeAdapter();
    ForceRanks(a, kForced);
    const int64_t rt = kForced[task];
    ASSERT_EQ(a.ChosenRank(task), rt);
    auto x = torch::randn({4, kIn}, torch::kFloat64);
    a.Delta(x, task, false).sum().backward();
    // ranks above r_t get exactly no gradient, every used rank does
    EXPECT_EQ(a.A.grad().narrow(0, rt, kRank - rt).abs().sum().item<double>(), 0.0) << "task " << task;
    EXPECT_EQ(a.B.grad().narrow(1, rt, kRank - rt).abs().sum().item<double>(), 0.0) << "task " << task;
    for (int64_t j = 0; j < rt; ++j) {
      EXPECT_GT(a.A.grad()[j].abs().sum().item<double>(), 0.0) << "task " << task << " rank row " << j;
      EXPECT_GT(a.B.grad().select(1, j).abs().sum().item<double>(), 0.0) << "task " << task << " rank col " << j;
    }
    // value, component by component: s(r_t) * alpha/r * sum_{j < r_t} b_j (a_j . x), s = r_t/|T|
    torch::NoGradGuard ng;
    auto expect = torch::zeros({4, kOut}, torch::kFloat64);
    for (int64_t j = 0; j < rt; ++j)
      expect += torch::outer(torch::mv(x, a.A[j]), a.B.select(1, j)) * (static_cast<double>(rt) / kTasks * 8.0 / kRank);
    EXPECT_TRUE(torch::allclose(a.Delta(x, task, false), expect, 1e-10, 1e-12)) << "task " << task;
  }
}

TEST(MoreAdapter, DifferentTasksCanChooseDifferentRanks) {
  // With the gate's bias pushed towards different experts per task embedding, the map differs.
  auto a = MakeAdapter();
  torch::NoGradGuard ng;
  a.gate_w.zero_();
  a.gate_b.zero_();
  a.E.zero_();
  for (int t = 0; t < kTasks; ++t) {
    a.E[t][t] = 5.0;      // task t lights feature t
    a.gate_w[t][t] = 5.0;  // feature t votes for expert t (rank t+1)
  }
  for (int t = 0; t < kTasks; ++t) EXPECT_EQ(a.ChosenRank(t), t + 1);
}

TEST(MoreAdapter, MergedDeltaEqualsAdapterPathInEveryMode) {
  for (std::string scaling : {"paper", "none", "per_component"})
    for (bool soft : {false, true})
      for (bool more : {true, false}) {
        auto a = MakeAdapter(scaling, soft, more);
        if (more) ForceRanks(a, kForced);
        auto x = torch::randn({3, kIn}, torch::kFloat64);
        torch::NoGradGuard ng;
        for (int t = 0; t < kTasks; ++t) {
          auto merged = torch::matmul(x, a.MergedDelta(t).t());
          EXPECT_TRUE(torch::allclose(merged, a.Delta(x, t, false), 1e-10, 1e-12))
              << scaling << " soft=" << soft << " more=" << more << " task " << t;
        }
      }
}

// The expected merged update of one task, computed component by component from the method's
// definition (not through ComponentWeights): soft selection mixes the experts k = 1..r with
// p = softmax(W_g e_t + b_g), each expert k being the first k components; per_component scales
// component j of A and of B by (j+1)/r; paper multiplies expert k by k/|T|.
torch::Tensor ExpectedMergedDelta(const MoreAdapter& a, int task, const std::string& scaling, bool soft,
                                  double scale_tasks = kTasks) {
  torch::NoGradGuard ng;
  const double base = a.options().alpha / kRank;
  auto component = [&](int64_t j) {  // rank-one term j with its per-component factors
    const double c = scaling == "per_component" ? static_cast<double>(j + 1) / kRank : 1.0;
    return torch::outer(a.B.select(1, j) * c, a.A[j] * c);
  };
  auto expert = [&](int64_t k) {  // expert of rank k, with s(k)
    auto d = torch::zeros({kOut, kIn}, torch::kFloat64);
    for (int64_t j = 0; j < k; ++j) d += component(j);
    return d * (scaling == "paper" ? static_cast<double>(k) / scale_tasks : 1.0);
  };
  std::vector<double> logits(kRank);
  for (int64_t k = 0; k < kRank; ++k) {
    double l = a.gate_b[k].item<double>();
    for (int64_t i = 0; i < kIn; ++i) l += a.gate_w[k][i].item<double>() * a.E[task][i].item<double>();
    logits[k] = l;
  }
  if (!soft) {
    const int64_t k = std::max_element(logits.begin(), logits.end()) - logits.begin();
    return expert(k + 1) * base;
  }
  double z = 0;
  for (double l : logits) z += std::exp(l);
  auto d = torch::zeros({kOut, kIn}, torch::kFloat64);
  for (int64_t k = 0; k < kRank; ++k) d += expert(k + 1) * (std::exp(logits[k]) / z);
  return d * base;
}

TEST(MoreAdapter, EveryModeMatchesAnIndependentComputation) {
  for (std::string scaling : {"paper", "none", "per_component"})
    for (bool soft : {false, true}) {
      auto a = MakeAdapter(scaling, soft);
      if (!soft) ForceRanks(a, kForced);
      else {  // a random gate: every expert gets a non-trivial probability
        torch::NoGradGuard ng;
        a.gate_b.copy_(torch::randn({kRank}, torch::kFloat64));
      }
      auto x = torch::randn({3, kIn}, torch::kFloat64);
      for (int t = 0; t < kTasks; ++t) {
        const std::string what = scaling + " soft=" + std::to_string(soft) + " task " + std::to_string(t);
        if (!soft) ASSERT_EQ(a.ChosenRank(t), kForced[t]) << what;
        auto expect = ExpectedMergedDelta(a, t, scaling, soft);
        torch::NoGradGuard ng;
        EXPECT_TRUE(torch::allclose(a.MergedDelta(t), expect, 1e-10, 1e-12)) << what;
        EXPECT_TRUE(torch::allclose(a.Delta(x, t, false), torch::matmul(x, expect.t()), 1e-10, 1e-12)) << what;
      }
    }
}

TEST(MoreAdapter, PerComponentScalingMatchesDefinition) {
  auto a = MakeAdapter("per_component");
  ForceRanks(a, kForced);
  torch::NoGradGuard ng;
  for (int t = 0; t < kTasks; ++t) {
    const int64_t rt = kForced[t];
    ASSERT_EQ(a.ChosenRank(t), rt);
    // alpha/r * sum_{j < r_t} ((j+1)/r)^2 b_j a_j^T, written out
    auto expect = torch::zeros({kOut, kIn}, torch::kFloat64);
    for (int64_t j = 0; j < rt; ++j) {
      const double c = static_cast<double>(j + 1) / kRank;
      expect += torch::outer(a.B.select(1, j), a.A[j]) * (c * c);
    }
    EXPECT_TRUE(torch::allclose(a.MergedDelta(t), expect * (8.0 / kRank), 1e-12, 1e-12)) << "task " << t;
  }
}

TEST(MoreAdapter, LoraBaselineUsesFullRankAndNoTaskParameters) {
  auto a = MakeAdapter("paper", false, false);
  EXPECT_EQ(a.Params().size(), 2u);
  EXPECT_EQ(a.ChosenRank(0), kRank);
  EXPECT_EQ(a.ChosenRank(2), kRank);
}

// Central finite differences of f over every element of `p`, against autograd.
void CheckGrad(const std::function<torch::Tensor()>& f, torch::Tensor& p, const std::string& what) {
  p.mutable_grad() = torch::Tensor();
  f().backward();
  auto analytic = p.grad().clone();
  torch::NoGradGuard ng;
  auto flat = p.view({-1});
  auto num = torch::zeros_like(flat);
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    const double fp = f().item<double>();
    flat[i] = orig - eps;
    const double fm = f().item<double>();
    flat[i] = orig;
    num[i] = (fp - fm) / (2 * eps);
  }
  EXPECT_TRUE(torch::allclose(analytic.view({-1}), num, 1e-5, 1e-7))
      << what << " max err " << (analytic.view({-1}) - num).abs().max().item<double>();
}

TEST(MoreAdapter, GradcheckDoubleHardSelection) {
  auto a = MakeAdapter("paper");
  auto grid = ProcessGrid::Single();
  auto x = torch::randn({2, 3, kIn}, torch::kFloat64).requires_grad_(true);
  auto mask = torch::ones({2, 3});
  mask[1][2] = 0;
  auto w = torch::randn({2, 3, kOut}, torch::kFloat64);
  // (the gate path's forward value is constant (STE = 1), so its true derivative is 0 and
  //  only the smooth parameters are checked here; the soft test covers the gate)
  auto f = [&]() { return (a.Delta(x, 1, false) * w).sum() + a.ContrastiveLoss(x, mask, 1, grid->tp()); };
  CheckGrad(f, a.A, "A");
  CheckGrad(f, a.B, "B");
  // E also feeds the gate, whose STE gradient is by design not the (zero) true derivative:
  // check E through the contrastive loss alone
  auto fc = [&]() { return a.ContrastiveLoss(x, mask, 1, grid->tp()); };
  CheckGrad(fc, a.E, "E (contrastive)");
  CheckGrad(f, x, "x");
}

TEST(MoreAdapter, GradcheckDoubleSoftSelection) {
  auto a = MakeAdapter("paper", true);
  auto x = torch::randn({2, 3, kIn}, torch::kFloat64);
  auto w = torch::randn({2, 3, kOut}, torch::kFloat64);
  auto f = [&]() { return (a.Delta(x, 2, false) * w).sum(); };
  CheckGrad(f, a.gate_w, "gate_w");
  CheckGrad(f, a.gate_b, "gate_b");
  CheckGrad(f, a.E, "E");
  CheckGrad(f, a.A, "A");
}

// The fused node (LoraLinear) against the composition it replaces, x W^T + Delta(x): values and
// the gradients of x, W and every adapter parameter, in every mode, with dropout (same draws:
// the RNG is re-seeded before each) and for a tensor-parallel slice of the adapter.
struct LinearRun {
  torch::Tensor y, dx, dw;
  std::vector<torch::Tensor> grads;
};
LinearRun RunLinear(MoreAdapter& a, const torch::Tensor& x0, const torch::Tensor& w0, int task, bool fused,
                    bool training) {
  ZeroGrads(a);
  auto x = x0.clone().requires_grad_(true);
  auto w = w0.clone().requires_grad_(true);
  torch::manual_seed(5);
  auto y = fused ? LoraLinear(x, w, a.FactorsFor(task, training))
                 : torch::matmul(x, w.t()) + a.Delta(x, task, training).to(x.scalar_type());
  auto probe = torch::linspace(-1, 1, y.numel(), y.options()).view(y.sizes());
  (y * probe).sum().backward();
  LinearRun r{y.detach(), x.grad(), w.grad(), {}};
  for (auto& [n, t] : a.Params()) r.grads.push_back(t->grad().defined() ? t->grad().clone() : torch::Tensor());
  return r;
}

void ExpectSameRun(const LinearRun& f, const LinearRun& r, double rtol, double atol, const std::string& what) {
  EXPECT_TRUE(torch::allclose(f.y, r.y, rtol, atol)) << what << ": output";
  EXPECT_TRUE(torch::allclose(f.dx, r.dx, rtol, atol)) << what << ": dx";
  EXPECT_TRUE(torch::allclose(f.dw, r.dw, rtol, atol)) << what << ": dW";
  ASSERT_EQ(f.grads.size(), r.grads.size());
  for (size_t i = 0; i < f.grads.size(); ++i) {
    ASSERT_EQ(f.grads[i].defined(), r.grads[i].defined()) << what << ": param " << i;
    if (r.grads[i].defined())
      EXPECT_TRUE(torch::allclose(f.grads[i], r.grads[i], rtol, atol)) << what << ": param " << i;
  }
}

TEST(LoraLinear, FusedNodeEqualsBasePlusAdapterInEveryMode) {
  for (std::string scaling : {"paper", "none", "per_component"})
    for (bool soft : {false, true})
      for (bool more : {true, false})
        for (double dropout : {0.0, 0.3}) {
          auto a = MakeAdapter(scaling, soft, more, dropout);
          auto x = torch::randn({2, 3, kIn}, torch::kFloat64);
          auto w = torch::randn({kOut, kIn}, torch::kFloat64);
          for (int t = 0; t < kTasks; ++t) {
            const std::string what = scaling + " soft=" + std::to_string(soft) + " more=" + std::to_string(more) +
                                     " dropout=" + std::to_string(dropout) + " task " + std::to_string(t);
            ExpectSameRun(RunLinear(a, x, w, t, true, true), RunLinear(a, x, w, t, false, true), 1e-10, 1e-12, what);
          }
        }
}

TEST(LoraLinear, FusedNodeEqualsBasePlusAdapterOnATensorParallelSlice) {
  for (auto kind : {ParallelKind::kColumn, ParallelKind::kRow}) {
    AdapterOptions o;
    o.rank = kRank;
    o.num_tasks = kTasks;
    o.alpha = 8.0;
    const int64_t d_in = 8, d_out = 6;
    MoreAdapter a("layers.0.o", d_in, d_out, o, kind, 1, 2);
    torch::manual_seed(12);
    a.B = torch::randn({d_out, kRank});
    for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
    const bool column = kind == ParallelKind::kColumn;
    auto x = torch::randn({4, column ? d_in : d_in / 2}, torch::kFloat64);
    auto w = torch::randn({column ? d_out / 2 : d_out, column ? d_in : d_in / 2}, torch::kFloat64);
    ExpectSameRun(RunLinear(a, x, w, 0, true, false), RunLinear(a, x, w, 0, false, false), 1e-10, 1e-12,
                  column ? "column" : "row");
  }
}

TEST(LoraLinear, Bf16BaseWithFp32AdapterMatchesTheComposition) {
  auto a = MakeAdapter();
  for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat32).requires_grad_(true);
  auto x = torch::randn({2, 3, kIn}).to(torch::kBFloat16);
  auto w = torch::randn({kOut, kIn}).to(torch::kBFloat16);
  auto f = RunLinear(a, x, w, 1, true, true), r = RunLinear(a, x, w, 1, false, true);
  EXPECT_EQ(f.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f.dx.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f.grads[0].scalar_type(), torch::kFloat32);
  // the fused node's last adapter GEMM runs in bf16 (u, b rounded), the composition's in fp32
  ExpectSameRun(f, r, 2e-2, 2e-2, "bf16");
  // Both against the same computation in double (from the same bf16 inputs and fp32 parameters):
  // the fused node's output and input gradient are within a small multiple of the composition's
  // own bf16 error, here with the adapter term as large as the base term (B ~ N(0, 1)).
  auto d = MakeAdapter();
  auto from = a.Params();
  for (auto& [n, t] : d.Params()) {
    auto src = std::find_if(from.begin(), from.end(), [&](auto& p) { return p.first == n; });
    *t = src->second->detach().to(torch::kFloat64).requires_grad_(true);
  }
  auto ref = RunLinear(d, x.to(torch::kFloat64), w.to(torch::kFloat64), 1, false, true);
  auto err = [](const torch::Tensor& p, const torch::Tensor& q) {
    return (p.to(torch::kFloat64) - q).abs().max().item<double>() / q.abs().max().item<double>();
  };
  EXPECT_LT(err(f.y, ref.y), 1e-2);
  EXPECT_LT(err(f.dx, ref.dx), 1e-2);
  EXPECT_LE(err(f.y, ref.y), 3 * err(r.y, ref.y) + 1e-6) << err(f.y, ref.y) << " vs " << err(r.y, ref.y);
  EXPECT_LE(err(f.dx, ref.dx), 3 * err(r.dx, ref.dx) + 1e-6) << err(f.dx, ref.dx) << " vs " << err(r.dx, ref.dx);
  // the parameters' gradients stay fp32-accurate
  EXPECT_LT(err(f.grads[0], ref.grads[0]), 1e-2);
  EXPECT_LT(err(f.grads[1], ref.grads[1]), 1e-2);
}

// Modules reading one bf16 input share one fp32 copy of it (ForwardContext::AdapterInput), made
// outside autograd; the node given that copy computes exactly what it computes casting inside.
TEST(LoraLinear, ModulesReadingOneInputShareOneAdapterCopy) {
  auto a = MakeAdapter();
  for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat32).requires_grad_(true);
  auto x0 = torch::randn({2, 3, kIn}).to(torch::kBFloat16);
  auto w = torch::randn({kOut, kIn}).to(torch::kBFloat16);
  ForwardContext ctx;
  auto x = x0.clone().requires_grad_(true);
  auto c1 = ctx.AdapterInput(x, torch::kFloat32), c2 = ctx.AdapterInput(x, torch::kFloat32);
  EXPECT_TRUE(c1.is_same(c2));
  EXPECT_FALSE(c1.requires_grad());
  EXPECT_TRUE(torch::equal(c1, x0.to(torch::kFloat32)));
  auto other = x0.clone();
  EXPECT_FALSE(ctx.AdapterInput(other, torch::kFloat32).is_same(c1));
  auto run = [&](bool shared) {
    ZeroGrads(a);
    auto xi = x0.clone().requires_grad_(true);
    ForwardContext c;
    torch::manual_seed(5);  // the same dropout draws in both runs
    const auto f = a.FactorsFor(1, true);
    auto y = LoraLinear(xi, w, f, shared ? c.AdapterInput(xi, torch::kFloat32) : torch::Tensor());
    auto probe = torch::linspace(-1, 1, y.numel(), torch::kFloat32).view(y.sizes()).to(y.scalar_type());
    (y * probe).sum().backward();
    return std::make_tuple(y.detach(), xi.grad(), a.A.grad().clone(), a.B.grad().clone(), a.gate_w.grad().clone());
  };
  const auto s = run(true), n = run(false);
  EXPECT_TRUE(torch::equal(std::get<0>(s), std::get<0>(n)));
  EXPECT_TRUE(torch::equal(std::get<1>(s), std::get<1>(n)));
  EXPECT_TRUE(torch::equal(std::get<2>(s), std::get<2>(n)));
  EXPECT_TRUE(torch::equal(std::get<3>(s), std::get<3>(n)));
  EXPECT_TRUE(torch::equal(std::get<4>(s), std::get<4>(n)));
  EXPECT_GT(std::get<3>(s).abs().max().item<double>(), 0.0);
}

// The node with the contrastive pooling as a second output against the composition it replaces:
// x W^T + Delta(x) and MeanPool(x) (x cast to the adapter dtype, autograd's bmm): both outputs
// and the gradients of x (through y and z together) and of the adapter, in double (tight, with
// and without dropout) and with a bf16 base; padding rows get no pooled gradient.
TEST(LoraLinear, PooledOutputEqualsMeanPoolAndShareTheInputGradient) {
  auto mask = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, torch::kFloat32);
  for (auto [base, dropout, tol] : {std::tuple{torch::kFloat64, 0.0, 1e-10}, std::tuple{torch::kFloat64, 0.3, 1e-10},
                                    std::tuple{torch::kBFloat16, 0.0, 2e-2}}) {
    auto a = MakeAdapter("paper", false, true, dropout);
    const auto ad = base == torch::kBFloat16 ? torch::kFloat32 : torch::kFloat64;
    for (auto& [n, t] : a.Params()) *t = t->detach().to(ad).requires_grad_(true);
    torch::manual_seed(8);
    auto x0 = torch::randn({2, 5, kIn}).to(base);
    auto w = torch::randn({kOut, kIn}).to(base);
    auto py = torch::randn({2, 5, kOut}).to(base), pz = torch::randn({2, kIn}).to(ad);
    auto run = [&](bool fused) {
      ZeroGrads(a);
      auto x = x0.clone().requires_grad_(true);
      torch::manual_seed(5);  // the same dropout draws
      const auto f = a.FactorsFor(1, true);
      auto weights = MeanPoolWeights(mask, ad);
      torch::Tensor y, z;
      if (fused) {
        std::tie(y, z) = LoraLinearPooled(x, w, f, torch::Tensor(), weights);
      } else {
        y = torch::matmul(x, w.t()) + a.Delta(x, 1, true).to(base);
        z = MeanPool(x, weights);
      }
      ((y * py).sum().to(ad) + (z * pz).sum()).backward();
      return std::make_tuple(y.detach(), z.detach(), x.grad(), a.A.grad().clone(), a.gate_w.grad().clone());
    };
    const auto f = run(true), r = run(false);
    auto close = [&](const torch::Tensor& p, const torch::Tensor& q) {
      return torch::allclose(p.to(torch::kFloat64), q.to(torch::kFloat64), tol, tol);
    };
    const std::string what = std::string(c10::toString(base)) + " dropout " + std::to_string(dropout);
    EXPECT_TRUE(close(std::get<0>(f), std::get<0>(r))) << what << ": y";
    EXPECT_TRUE(close(std::get<1>(f), std::get<1>(r))) << what << ": z";
    EXPECT_TRUE(close(std::get<2>(f), std::get<2>(r))) << what << ": dx";
    EXPECT_TRUE(close(std::get<3>(f), std::get<3>(r))) << what << ": dA";
    EXPECT_TRUE(close(std::get<4>(f), std::get<4>(r))) << what << ": dgate";
    EXPECT_EQ(std::get<2>(f).scalar_type(), base);
  }
  // the pooled gradient alone: a real token gets pz / count, padding nothing
  auto a = MakeAdapter();
  auto x = torch::randn({2, 5, kIn}, torch::kFloat64).requires_grad_(true);
  auto w = torch::zeros({kOut, kIn}, torch::kFloat64);
  auto pz = torch::randn({2, kIn}, torch::kFloat64);
  auto [y, z] = LoraLinearPooled(x, w, a.FactorsFor(0, false), torch::Tensor(), MeanPoolWeights(mask, torch::kFloat64));
  (z * pz).sum().backward();
  EXPECT_EQ(x.grad()[0].narrow(0, 3, 2).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(x.grad()[0][1], pz[0] / 3, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(x.grad()[1][4], pz[1] / 5, 1e-12, 1e-12));
}

// Packed rows: the pool is a matrix [E, R*L], each example's weights on its own positions only.
// The node's pooled output (summed over the non-zero weights on the CPU) and the gradients against
// the dense product pool x composed by autograd, in double.
TEST(LoraLinear, PooledOutputOfPackedRowsEqualsTheDensePoolProduct) {
  auto a = MakeAdapter();
  for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
  torch::manual_seed(9);
  const int64_t R = 2, L = 5;
  // example 0: row 0, columns 0-2; example 1: row 0, columns 3-4; example 2: row 1, columns 0-3;
  // row 1 column 4 is padding (no example)
  auto pool = torch::zeros({3, R * L}, torch::kFloat64);
  pool[0].narrow(0, 0, 3).fill_(1.0 / 3);
  pool[1].narrow(0, 3, 2).fill_(0.5);
  pool[2].narrow(0, 5, 4).fill_(0.25);
  auto x0 = torch::randn({R, L, kIn}, torch::kFloat64);
  auto w = torch::randn({kOut, kIn}, torch::kFloat64);
  auto py = torch::randn({R, L, kOut}, torch::kFloat64), pz = torch::randn({3, kIn}, torch::kFloat64);
  auto run = [&](bool fused) {
    ZeroGrads(a);
    auto x = x0.clone().requires_grad_(true);
    const auto f = a.FactorsFor(1, true);
    torch::Tensor y, z;
    if (fused) {
      std::tie(y, z) = LoraLinearPooled(x, w, f, torch::Tensor(), pool);
    } else {
      y = torch::matmul(x, w.t()) + a.Delta(x, 1, true);
      z = pool.mm(x.reshape({R * L, kIn}));
    }
    ((y * py).sum() + (z * pz).sum()).backward();
    return std::make_tuple(y.detach(), z.detach(), x.grad(), a.A.grad().clone());
  };
  const auto f = run(true), r = run(false);
  EXPECT_TRUE(torch::allclose(std::get<0>(f), std::get<0>(r), 1e-10, 1e-10)) << "y";
  EXPECT_TRUE(torch::allclose(std::get<1>(f), std::get<1>(r), 1e-10, 1e-10)) << "z";
  EXPECT_TRUE(torch::allclose(std::get<2>(f), std::get<2>(r), 1e-10, 1e-10)) << "dx";
  EXPECT_TRUE(torch::allclose(std::get<3>(f), std::get<3>(r), 1e-10, 1e-10)) << "dA";
  // by hand: example 2 is the mean of row 1's first four positions
  EXPECT_TRUE(torch::allclose(std::get<1>(f)[2], x0[1].narrow(0, 0, 4).mean(0), 1e-12, 1e-12));
}

TEST(MoreAdapter, ContrastiveLossPrefersTheMatchingTask) {
  auto a = MakeAdapter();
  auto grid = ProcessGrid::Single();
  torch::NoGradGuard ng;
  auto x = a.E[1].detach().clone().view({1, 1, kIn}).expand({2, 4, kIn}).contiguous();  // inputs = e_1
  auto mask = torch::ones({2, 4});
  const double l1 = a.ContrastiveLoss(x, mask, 1, grid->tp()).item<double>();
  const double l0 = a.ContrastiveLoss(x, mask, 0, grid->tp()).item<double>();
  EXPECT_LT(l1, l0);
  // by hand: CE over cos(z, e_k)/tau with label 1
  auto z = x[0][0];
  auto cos = torch::stack({torch::cosine_similarity(z, a.E[0], 0), torch::cosine_similarity(z, a.E[1], 0),
                           torch::cosine_similarity(z, a.E[2], 0)}) / 0.05;
  const double expect = -torch::log_softmax(cos, 0)[1].item<double>();
  EXPECT_NEAR(l1, expect, 1e-9);
}

TEST(MoreAdapter, MeanPoolSkipsPaddingAndIsSharedPerInput) {
  torch::manual_seed(5);
  auto x = torch::randn({2, 5, kIn}, torch::kFloat64);
  auto mask = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, torch::kFloat32);
  auto z = MeanPool(x, MeanPoolWeights(mask, torch::kFloat64));          // [2, kIn]
  EXPECT_TRUE(torch::allclose(z[0], x[0].narrow(0, 0, 3).mean(0), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(z[1], x[1].mean(0), 1e-12, 1e-12));
  // modules reading one input (q, k, v) pool it once: the first module's node makes it
  auto a = MakeAdapter();
  auto grid = ProcessGrid::Single();
  auto w = torch::randn({kOut, kIn}, torch::kFloat64);
  AdaptedLinear q(w, ParallelKind::kColumn, &a, &grid->tp()), k(w, ParallelKind::kColumn, &a, &grid->tp());
  ForwardContext ctx;
  ctx.token_mask = mask;
  ctx.contrastive = true;
  EXPECT_FALSE(ctx.CachedPooled(x, torch::kFloat64).defined());
  q.Forward(x, ctx);
  auto z1 = ctx.CachedPooled(x, torch::kFloat64);
  ASSERT_TRUE(z1.defined());
  k.Forward(x, ctx);
  EXPECT_TRUE(ctx.CachedPooled(x, torch::kFloat64).is_same(z1));          // q, k: one pooling
  ASSERT_EQ(ctx.cl_pending.size(), 2u);                                    // losses wait for the flush
  ctx.FlushContrastive();
  ASSERT_EQ(ctx.cl_losses.size(), 1u);                                     // one batch: same shapes
  EXPECT_NEAR(ctx.cl_losses[0].item<double>(), 2 * a.ContrastiveLossPooled(z1, 0, grid->tp()).item<double>(), 1e-12);
  auto y = x.clone();                                                      // equal values, other tensor
  EXPECT_FALSE(ctx.CachedPooled(y, torch::kFloat64).defined());
  k.Forward(y, ctx);
  auto z2 = ctx.CachedPooled(y, torch::kFloat64);
  EXPECT_FALSE(z2.is_same(z1));
  EXPECT_TRUE(torch::allclose(z2, z1, 1e-14, 1e-14));
  EXPECT_TRUE(torch::allclose(z1, z, 1e-14, 1e-14));
  // the pooled loss is the loss on the tokens
  EXPECT_NEAR(a.ContrastiveLossPooled(z1, 2, grid->tp()).item<double>(),
              a.ContrastiveLoss(x, mask, 2, grid->tp()).item<double>(), 1e-12);
}

// The batched contrastive loss against the per-module one (itself checked by hand above): values
// and the gradients of every module's E and of the pooled inputs, with a shared input (q, k), a
// third module with its own input, and the trained tasks a subset of E's rows.
TEST(MoreAdapter, BatchedContrastiveLossEqualsEachModulesLoss) {
  AdapterOptions o;
  o.rank = kRank;
  o.num_tasks = kTasks;
  o.active_tasks = {0, 2};
  o.seed = 4;
  std::vector<std::unique_ptr<MoreAdapter>> mods;
  for (const char* n : {"layers.0.q", "layers.0.k", "layers.1.q"}) {
    mods.push_back(std::make_unique<MoreAdapter>(n, kIn, kOut, o, ParallelKind::kColumn, 0, 1));
    for (auto& [s, t] : mods.back()->Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
  }
  auto grid = ProcessGrid::Single();
  torch::manual_seed(12);
  auto z0 = torch::randn({4, kIn}, torch::kFloat64), z1 = torch::randn({4, kIn}, torch::kFloat64);
  auto run = [&](bool batched) {
    auto za = z0.clone().requires_grad_(true), zb = z1.clone().requires_grad_(true);
    std::vector<torch::Tensor> pooled{za, za, zb};
    torch::Tensor losses;
    if (batched) {
      losses = MoreAdapter::ContrastiveLossBatch({mods[0].get(), mods[1].get(), mods[2].get()}, pooled, 2, grid->tp());
    } else {
      std::vector<torch::Tensor> l;
      for (size_t m = 0; m < 3; ++m) l.push_back(mods[m]->ContrastiveLossPooled(pooled[m], 2, grid->tp()));
      losses = torch::stack(l);
    }
    for (auto& m : mods) m->E.mutable_grad() = torch::Tensor();
    (losses * torch::tensor({1.0, 2.0, 3.0}, torch::kFloat64)).sum().backward();
    std::vector<torch::Tensor> g{losses.detach(), za.grad(), zb.grad()};
    for (auto& m : mods) g.push_back(m->E.grad().clone());
    return g;
  };
  const auto b = run(true), r = run(false);
  ASSERT_EQ(b[0].sizes(), r[0].sizes());
  for (size_t i = 0; i < b.size(); ++i)
    EXPECT_TRUE(torch::allclose(b[i], r[i], 1e-12, 1e-14)) << "item " << i << ": " << (b[i] - r[i]).abs().max();
  EXPECT_GT(b[0].min().item<double>(), 0.0);
  // a module of another width does not batch with these
  MoreAdapter wide("layers.0.gate", kIn + 1, kOut, o, ParallelKind::kColumn, 0, 1);
  EXPECT_NE(wide.ContrastiveBatchKey(torch::zeros({4, kIn + 1})), mods[0]->ContrastiveBatchKey(z0));
  EXPECT_THROW(MoreAdapter::ContrastiveLossBatch({mods[0].get(), &wide}, {z0, torch::zeros({4, kIn + 1})}, 2,
                                                 grid->tp()),
               Error);
}

TEST(MoreAdapter, InitDependsOnlyOnSeedAndName) {
  AdapterOptions o;
  o.rank = 4;
  o.num_tasks = 2;
  o.seed = 9;
  MoreAdapter a("layers.1.v", 8, 8, o, ParallelKind::kColumn, 0, 1);
  MoreAdapter b("layers.1.v", 8, 8, o, ParallelKind::kColumn, 1, 2);  // another TP rank
  MoreAdapter c("layers.1.k", 8, 8, o, ParallelKind::kColumn, 0, 1);
  EXPECT_TRUE(torch::equal(a.A, b.A));
  EXPECT_TRUE(torch::equal(a.E, b.E));
  EXPECT_FALSE(torch::equal(a.A, c.A));
  EXPECT_EQ(a.B.abs().sum().item<double>(), 0.0);  // B = 0: the adapter starts as the identity
}

TEST(MoreAdapter, TaskEmbeddingInitIsKaimingByDefaultOrTheGivenNormal) {
  EXPECT_EQ(AdapterOptions{}.task_emb_init, "kaiming");
  AdapterOptions o;
  o.rank = 2;
  o.num_tasks = 64;
  const int64_t d_in = 512;
  MoreAdapter k("layers.0.q", d_in, 8, o, ParallelKind::kColumn, 0, 1);
  // He-normal over fan_in = d_in: std sqrt(2/d_in); 32768 draws give the std to ~0.4%
  EXPECT_NEAR(k.E.std().item<double>() / std::sqrt(2.0 / d_in), 1.0, 0.02);
  EXPECT_NEAR(k.E.mean().item<double>(), 0.0, 0.01 * std::sqrt(2.0 / d_in) * 10);
  o.task_emb_init = "normal";
  o.task_emb_std = 0.01;
  MoreAdapter n("layers.0.q", d_in, 8, o, ParallelKind::kColumn, 0, 1);
  EXPECT_NEAR(n.E.std().item<double>() / 0.01, 1.0, 0.02);
  o.task_emb_std = 0.3;
  MoreAdapter n3("layers.0.q", d_in, 8, o, ParallelKind::kColumn, 0, 1);
  EXPECT_NEAR(n3.E.std().item<double>() / 0.3, 1.0, 0.02);
  o.task_emb_init = "xavier";
  EXPECT_THROW(MoreAdapter("layers.0.q", d_in, 8, o, ParallelKind::kColumn, 0, 1), Error);
}

// |T| of s(r_t) is the number of tasks trained, and only trained tasks are contrastive classes.
TEST(MoreAdapter, ScalingAndNegativesUseOnlyTheTrainedTasks) {
  AdapterOptions o;
  o.rank = kRank;
  o.alpha = 8.0;
  o.num_tasks = kTasks;
  o.scale_tasks = 2;
  o.active_tasks = {0, 2};  // task 1 is in the shards but not trained
  MoreAdapter a("layers.0.q", kIn, kOut, o, ParallelKind::kColumn, 0, 1);
  a.B = torch::randn({kOut, kRank});
  for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
  ForceRanks(a, kForced);
  {
    torch::NoGradGuard ng;
    for (int t : {0, 2})
      EXPECT_TRUE(torch::allclose(a.MergedDelta(t), ExpectedMergedDelta(a, t, "paper", false, 2.0), 1e-10, 1e-12));
    a.E.add_(torch::randn({kTasks, kIn}, torch::kFloat64));  // non-degenerate cosines
  }
  auto grid = ProcessGrid::Single();
  auto x = torch::randn({2, 4, kIn}, torch::kFloat64);
  auto mask = torch::ones({2, 4});
  auto loss = a.ContrastiveLoss(x, mask, 2, grid->tp());
  // by hand: CE over the classes {0, 2} only, label = task 2 (position 1)
  torch::NoGradGuard ng;
  double expect = 0;
  for (int b = 0; b < 2; ++b) {
    auto z = x[b].mean(0);
    const double c0 = torch::cosine_similarity(z, a.E[0], 0).item<double>() / 0.05;
    const double c2 = torch::cosine_similarity(z, a.E[2], 0).item<double>() / 0.05;
    expect += -(c2 - std::log(std::exp(c0) + std::exp(c2))) / 2;
  }
  EXPECT_NEAR(loss.item<double>(), expect, 1e-9);
  {
    torch::AutoGradMode on(true);
    a.E.mutable_grad() = torch::Tensor();
    a.ContrastiveLoss(x, mask, 0, grid->tp()).backward();
  }
  EXPECT_EQ(a.E.grad()[1].abs().sum().item<double>(), 0.0);  // not a negative: no gradient
  EXPECT_GT(a.E.grad()[2].abs().sum().item<double>(), 0.0);
  EXPECT_THROW(a.ContrastiveLoss(x, mask, 1, grid->tp()), Error);  // not trained: no class
}

// "w/ subset experts": only the listed ranks are experts; hard and soft selection against a
// computation written out per expert.
TEST(MoreAdapter, SubsetExpertsUseOnlyTheListedRanks) {
  AdapterOptions o;
  o.rank = kRank;
  o.alpha = 8.0;
  o.num_tasks = kTasks;
  o.experts = {2, 4};
  for (bool soft : {false, true}) {
    o.soft = soft;
    MoreAdapter a("layers.0.q", kIn, kOut, o, ParallelKind::kColumn, 0, 1);
    a.B = torch::randn({kOut, kRank});
    for (auto& [n, t] : a.Params()) *t = t->detach().to(torch::kFloat64).requires_grad_(true);
    ASSERT_EQ(a.gate_w.size(0), 2);
    ASSERT_EQ(a.gate_b.size(0), 2);
    torch::NoGradGuard ng;
    if (!soft) {  // task t votes for expert t % 2
      a.gate_w.zero_();
      a.gate_b.zero_();
      a.E.zero_();
      for (int t = 0; t < kTasks; ++t) {
        a.E[t][t] = 3.0;
        a.gate_w[t % 2][t] = 3.0;
      }
    } else {
      a.gate_b.copy_(torch::randn({2}, torch::kFloat64));
    }
    for (int t = 0; t < kTasks; ++t) {
      auto p = torch::softmax(torch::mv(a.gate_w, a.E[t]) + a.gate_b, 0);
      auto expect = torch::zeros({kOut, kIn}, torch::kFloat64);
      for (int i = 0; i < 2; ++i) {
        const int64_t size = o.experts[i];
        auto expert = torch::zeros({kOut, kIn}, torch::kFloat64);
        for (int64_t j = 0; j < size; ++j) expert += torch::outer(a.B.select(1, j), a.A[j]);
        const double weight = soft ? p[i].item<double>() : (i == t % 2 ? 1.0 : 0.0);
        expect += expert * (weight * static_cast<double>(size) / kTasks);
      }
      expect *= 8.0 / kRank;
      if (!soft) EXPECT_EQ(a.ChosenRank(t), o.experts[t % 2]);
      EXPECT_TRUE(torch::allclose(a.MergedDelta(t), expect, 1e-10, 1e-12)) << "soft=" << soft << " task " << t;
    }
  }
  o.experts = {3, 2};
  EXPECT_THROW(MoreAdapter("layers.0.q", kIn, kOut, o, ParallelKind::kColumn, 0, 1), Error);
}

// "w/o task embeddings": one learned gate input for every task, so one expert for all.
TEST(MoreAdapter, SharedGateInputChoosesOneExpertForAllTasks) {
  AdapterOptions o;
  o.rank = kRank;
  o.num_tasks = kTasks;
  o.shared_gate_input = true;
  MoreAdapter a("layers.0.q", kIn, kOut, o, ParallelKind::kColumn, 0, 1);
  ASSERT_EQ(a.E.size(0), 1);
  {
    torch::NoGradGuard ng;
    a.gate_b.zero_();
    a.gate_b[2] = 10.0;  // the random gate_w stays: E still shapes the logits
  }
  for (int t = 0; t < kTasks; ++t) {
    EXPECT_EQ(a.ChosenRank(t), 3);
    EXPECT_TRUE(torch::equal(a.Select(t).probs, a.Select(0).probs));  // one gate input for all
  }
  // the gate still trains through the STE, from every task
  a.B = torch::randn({kOut, kRank}).requires_grad_(true);
  a.E.requires_grad_(true);
  a.gate_w.requires_grad_(true);
  a.Delta(torch::randn({2, kIn}), 2, false).pow(2).sum().backward();
  EXPECT_GT(a.E.grad().abs().sum().item<double>(), 0.0);
  auto grid = ProcessGrid::Single();
  EXPECT_THROW(a.ContrastiveLoss(torch::randn({1, 2, kIn}), torch::ones({1, 2}), 0, grid->tp()), Error);
}

}  // namespace
}  // namespace more
