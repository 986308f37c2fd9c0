// Fused RMSNorm, RoPE, SwiGLU and causal attention against their ATen compositions: values and gradients of every
// input, in double (tight), fp32 and bf16, on non-contiguous inputs like the model's q/k views.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "more/model/fused_ops.h"

namespace more {
namespace {

torch::Tensor RmsNormRef(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  auto xf = x.to(x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return w * y.to(x.scalar_type());
}

torch::Tensor RopeRef(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& s) {
  const int64_t half = x.size(-1) / 2;
  auto rot = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * c + rot * s;
}

struct Grads {
  torch::Tensor y, dx, dw;
};

// y = f(x, w); loss = sum(y * probe); returns y and the gradients of x and w.
template <typename F>
Grads RunWithGrads(F f, const torch::Tensor& x0, const torch::Tensor& w0) {
  auto x = x0.detach().clone().requires_grad_(true);
  torch::Tensor w;
  if (w0.defined()) w = w0.detach().clone().requires_grad_(true);
  auto y = f(x, w);
  torch::manual_seed(9);
  auto probe = torch::randn(y.sizes(), y.options());
  (y * probe).sum().backward();
  return {y.detach(), x.grad(), w.defined() ? w.grad() : torch::Tensor()};
}

void ExpectClose(const Grads& a, const Grads& b, double tol, const std::string& what) {
  auto close = [&](const torch::Tensor& p, const torch::Tensor& q) {
    return torch::allclose(p.to(torch::kFloat64), q.to(torch::kFloat64), tol, tol);
  };
  EXPECT_TRUE(close(a.y, b.y)) << what << ": output";
  EXPECT_TRUE(close(a.dx, b.dx)) << what << ": dx";
  if (b.dw.defined()) EXPECT_TRUE(close(a.dw, b.dw)) << what << ": dw";
}

// Causal attention, written out row by row in double: position i attends to j <= i only. Independent
// of both CausalAttention paths (no mask tensor, no baddbmm, no SDPA).
torch::Tensor AttentionLoopRef(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto qd = q.to(torch::kFloat64), kd = k.to(torch::kFloat64), vd = v.to(torch::kFloat64);
  const int64_t s = q.size(2);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < s; ++i) {
    auto qi = qd.narrow(2, i, 1);                                           // [B, H, 1, hd]
    auto kj = kd.narrow(2, 0, i + 1), vj = vd.narrow(2, 0, i + 1);           // [B, H, i+1, hd]
    auto p = torch::softmax(torch::matmul(qi, kj.transpose(2, 3)), -1);     // [B, H, 1, i+1]
    rows.push_back(torch::matmul(p, vj));                                   // [B, H, 1, hd]
  }
  return torch::cat(rows, 2);
}

TEST(FusedOps, ComposedAttentionMatchesARowByRowReference) {
  torch::manual_seed(4);
  auto q = torch::randn({2, 3, 7, 8}, torch::kFloat64), k = torch::randn({2, 3, 7, 8}, torch::kFloat64),
       v = torch::randn({2, 3, 7, 8}, torch::kFloat64);
  auto got = CausalAttention(q, k, v, AttentionImpl::kComposed);
  EXPECT_TRUE(torch::allclose(got, AttentionLoopRef(q, k, v), 1e-12, 1e-12));
}

TEST(FusedOps, FusedAttentionMatchesTheComposition) {
  if (!FusedAttentionAvailable()) GTEST_SKIP() << "this LibTorch has no scaled_dot_product_attention (< 2.1)";
  for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-10}, {torch::kFloat32, 2e-5}, {torch::kBFloat16, 3e-2}}) {
    torch::manual_seed(2);
    // k and v as the model hands them: GQA heads expanded, q pre-scaled, strided views of [B, S, H, hd]
    auto q = (torch::randn({2, 13, 4, 16}) * 0.25).to(dtype).transpose(1, 2);
    auto k = torch::randn({2, 13, 2, 16}).to(dtype).transpose(1, 2).repeat_interleave(2, 1);
    auto v = torch::randn({2, 13, 2, 16}).to(dtype).transpose(1, 2).repeat_interleave(2, 1);
    auto run = [&](AttentionImpl impl) {
      auto qq = q.detach().clone().requires_grad_(true), kk = k.detach().clone().requires_grad_(true),
           vv = v.detach().clone().requires_grad_(true);
      auto y = CausalAttention(qq, kk, vv, impl);
      torch::manual_seed(9);
      (y * torch::randn(y.sizes(), y.options())).sum().backward();
      return std::vector<torch::Tensor>{y.detach(), qq.grad(), kk.grad(), vv.grad()};
    };
    auto fused = run(AttentionImpl::kFused), ref = run(AttentionImpl::kComposed);
    const char* names[] = {"output", "dq", "dk", "dv"};
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(fused[i].scalar_type(), dtype);
      EXPECT_TRUE(torch::allclose(fused[i].to(torch::kFloat64), ref[i].to(torch::kFloat64), tol, tol))
          << c10::toString(dtype) << " " << names[i] << ": max diff "
          << (fused[i].to(torch::kFloat64) - ref[i].to(torch::kFloat64)).abs().max().item<double>();
    }
    // and both against the independent reference (values)
    EXPECT_TRUE(torch::allclose(fused[0].to(torch::kFloat64), AttentionLoopRef(q, k, v), tol, tol)) << c10::toString(dtype);
  }
}

// Packed rows (data.packing): SegmentCausalAttention against each example's attention computed
// alone by the double loop above (its own q, k, v slices; no mask tensor), values and the
// gradients of q, k, v (the loop's own autograd graph), then the fused path against it.
struct Segment {
  int64_t row, start, len;
};
// rows of 11 and segments of 4 + 5 (+ 2 padding), 11, 3 + 3 + 5 (padding of 5 treated as an example)
const std::vector<Segment> kSegments = {{0, 0, 4}, {0, 4, 5}, {0, 9, 2}, {1, 0, 11}, {2, 0, 3}, {2, 3, 3}, {2, 6, 5}};

torch::Tensor SegmentMask(int64_t rows, int64_t s) {
  auto m = torch::zeros({rows, 1, s, s}, torch::kBool);
  for (const auto& g : kSegments)
    for (int64_t i = 0; i < g.len; ++i)
      for (int64_t j = 0; j <= i; ++j) m[g.row][0][g.start + i][g.start + j] = true;
  return m;
}

TEST(FusedOps, SegmentAttentionEqualsEachExampleAlone) {
  const int64_t rows = 3, h = 2, s = 11, hd = 8;
  for (auto impl : {AttentionImpl::kComposed, AttentionImpl::kFused}) {
    if (impl == AttentionImpl::kFused && !FusedAttentionAvailable()) continue;
    for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-10}, {torch::kFloat32, 2e-5}}) {
      torch::manual_seed(5);
      auto q0 = (torch::randn({rows, h, s, hd}, torch::kFloat64) * 0.5), k0 = torch::randn({rows, h, s, hd}, torch::kFloat64),
           v0 = torch::randn({rows, h, s, hd}, torch::kFloat64);
      auto probe = torch::randn({rows, h, s, hd}, torch::kFloat64);
      auto leaf = [&](const torch::Tensor& t) { return t.to(dtype).detach().clone().requires_grad_(true); };
      auto q = leaf(q0), k = leaf(k0), v = leaf(v0);
      auto got = SegmentCausalAttention(q, k, v, SegmentMask(rows, s), impl);
      ASSERT_EQ(got.scalar_type(), dtype);
      (got.to(torch::kFloat64) * probe).sum().backward();
      // reference: every segment alone, in double
      auto qr = q0.detach().clone().requires_grad_(true), kr = k0.detach().clone().requires_grad_(true),
           vr = v0.detach().clone().requires_grad_(true);
      auto ref = torch::zeros({rows, h, s, hd}, torch::kFloat64);
      torch::Tensor loss = torch::zeros({}, torch::kFloat64);
      for (const auto& g : kSegments) {
        auto sl = [&](const torch::Tensor& t) { return t.select(0, g.row).narrow(1, g.start, g.len).unsqueeze(0); };
        auto out = AttentionLoopRef(sl(qr), sl(kr), sl(vr));                // [1, H, len, hd]
        loss = loss + (out * sl(probe)).sum();
        ref.select(0, g.row).narrow(1, g.start, g.len).copy_(out.squeeze(0).detach());
      }
      loss.backward();
      const std::string what = std::string(impl == AttentionImpl::kFused ? "fused " : "composed ") + c10::toString(dtype);
      auto near = [&](const torch::Tensor& a, const torch::Tensor& b) {
        return torch::allclose(a.to(torch::kFloat64), b, tol, tol);
      };
      EXPECT_TRUE(near(got.detach(), ref)) << what << " output: max diff "
                                           << (got.detach().to(torch::kFloat64) - ref).abs().max().item<double>();
      EXPECT_TRUE(near(q.grad(), qr.grad())) << what << " dq";
      EXPECT_TRUE(near(k.grad(), kr.grad())) << what << " dk";
      EXPECT_TRUE(near(v.grad(), vr.grad())) << what << " dv";
    }
  }
  // a mask of another shape is refused
  auto x = torch::randn({1, 1, 4, 8});
  EXPECT_THROW(SegmentCausalAttention(x, x, x, torch::ones({1, 1, 3, 3}, torch::kBool)), c10::Error);
}

TEST(FusedOps, RmsNormMatchesTheComposition) {
  for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-12}, {torch::kFloat32, 1e-5}, {torch::kBFloat16, 3e-2}}) {
    torch::manual_seed(1);
    auto x = (torch::randn({3, 5, 16}) * 3).to(dtype);
    auto w = (torch::rand({16}) + 0.5).to(dtype);
    auto fused = RunWithGrads([](auto& x, auto& w) { return FusedRmsNorm(x, w, 1e-5); }, x, w);
    auto ref = RunWithGrads([](auto& x, auto& w) { return RmsNormRef(x, w, 1e-5); }, x, w);
    EXPECT_EQ(fused.y.scalar_type(), dtype);
    EXPECT_EQ(fused.dx.scalar_type(), dtype);
    ExpectClose(fused, ref, tol, std::string("rmsnorm ") + c10::toString(dtype));
  }
}

TEST(FusedOps, SwiGluMatchesTheComposition) {
  for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-12}, {torch::kFloat32, 1e-5}, {torch::kBFloat16, 3e-2}}) {
    torch::manual_seed(4);
    auto g = (torch::randn({3, 5, 16}) * 3).to(dtype), u = torch::randn({3, 5, 16}).to(dtype);
    auto fused = RunWithGrads([](auto& g, auto& u) { return FusedSwiGlu(g, u); }, g, u);
    // the composition, silu written out: g * 1 / (1 + exp(-g)) * u
    auto ref = RunWithGrads([](auto& g, auto& u) { return g * torch::sigmoid(g) * u; }, g, u);
    EXPECT_EQ(fused.y.scalar_type(), dtype);
    EXPECT_EQ(fused.dx.scalar_type(), dtype);
    ExpectClose(fused, ref, tol, std::string("swiglu ") + c10::toString(dtype));
    EXPECT_GT(fused.dw.abs().max().item<double>(), 0.0);
  }
}

TEST(FusedOps, RopeMatchesTheCompositionOnStridedInput) {
  const int64_t b = 2, s = 7, h = 3, hd = 8;
  auto inv = torch::pow(10000.0, -torch::arange(0, hd, 2, torch::kFloat64) / hd);
  auto freqs = torch::outer(torch::arange(s, torch::kFloat64), inv);
  auto emb = torch::cat({freqs, freqs}, -1);                                // [S, hd], equal halves
  for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-12}, {torch::kFloat32, 1e-5}, {torch::kBFloat16, 3e-2}}) {
    auto c = (emb.cos() * 0.7).to(dtype), sn = (emb.sin() * 0.7).to(dtype);  // a folded scale, like q's
    torch::manual_seed(2);
    // [B, S, H*hd] -> [B, H, S, hd] view, as the attention builds q and k
    auto x = torch::randn({b, s, h * hd}).to(dtype).view({b, s, h, hd}).transpose(1, 2);
    ASSERT_FALSE(x.is_contiguous());
    auto none = torch::Tensor();
    auto fused = RunWithGrads([&](auto& x, auto&) { return FusedRope(x.view({b, s, h, hd}).transpose(1, 2), c, sn); },
                     x.transpose(1, 2).contiguous().view({b, s, h * hd}), none);
    auto ref = RunWithGrads([&](auto& x, auto&) { return RopeRef(x.view({b, s, h, hd}).transpose(1, 2), c, sn); },
                   x.transpose(1, 2).contiguous().view({b, s, h * hd}), none);
    ExpectClose(fused, ref, tol, std::string("rope ") + c10::toString(dtype));
  }
}

}  // namespace
}  // namespace more
