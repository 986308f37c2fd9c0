// Fused RMSNorm and RoPE nodes against their ATen compositions: values and gradients of every
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
