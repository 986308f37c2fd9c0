#include "more/model/fused_ops.h"

#include <torch/version.h>

#include <limits>

// scaled_dot_product_attention with an explicit scale: LibTorch 2.1 and later
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define MORE_HAVE_SDPA 1
#endif

namespace more {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class RmsNormFn : public torch::autograd::Function<RmsNormFn> {
 public:
  // statistics in fp32, or in double for double inputs (the tests)
  static torch::ScalarType Acc(const torch::Tensor& x) {
    return x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  }
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w, double eps) {
    auto xf = x.to(Acc(x));
    const auto d = static_cast<double>(x.size(-1));
    auto ms = at::linalg_vector_norm(xf, 2, {-1}, true).square_().div_(d);  // [.., 1] mean(x^2)
    auto rstd = ms.add_(eps).rsqrt_();
    auto y = (xf * rstd).to(x.scalar_type()).mul_(w);
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &x = s[0], &w = s[1], &rstd = s[2];
    auto xf = x.to(Acc(x));
    auto gf = grads[0].to(Acc(x));
    torch::Tensor dw;
    if (ctx->needs_input_grad(1)) {
      const auto lead = gf.dim() - 1;
      std::vector<int64_t> dims(lead);
      for (int64_t i = 0; i < lead; ++i) dims[i] = i;
      dw = (gf * xf * rstd).sum(dims).to(w.scalar_type());
    }
    // dx = rstd * (g w - xhat * mean(g w xhat)),  xhat = x rstd
    auto gw = gf * w;                                                        // (never in place: gf may be
                                                                             //  the incoming gradient itself)
    auto coef = (gw * xf).sum(-1, true).mul_(rstd.square()).div_(static_cast<double>(x.size(-1)));
    auto dx = gw.sub_(xf * coef).mul_(rstd).to(x.scalar_type());
    return {dx, dw, torch::Tensor()};
  }
};

// Rotate-half: o1 = x1 c - x2 s, o2 = x2 c + x1 s (c, s: the first half of the tables).
// Its transpose (backward): d1 = g1 c + g2 s, d2 = g2 c - g1 s, i.e. the same with -s.
torch::Tensor RotateHalf(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& s, double sign) {
  const int64_t half = x.size(-1) / 2;
  auto out = torch::empty(x.sizes(), x.options().memory_format(torch::MemoryFormat::Contiguous));
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto o1 = out.narrow(-1, 0, half), o2 = out.narrow(-1, half, half);
  at::mul_out(o1, x1, c);
  o1.addcmul_(x2, s, -sign);
  at::mul_out(o2, x2, c);
  o2.addcmul_(x1, s, sign);
  return out;
}

class RopeFn : public torch::autograd::Function<RopeFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    const int64_t half = x.size(-1) / 2;
    auto c = cos.narrow(-1, 0, half), s = sin.narrow(-1, 0, half);         // [S, hd/2]
    ctx->save_for_backward({c, s});
    return RotateHalf(x, c, s, 1.0);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto t = ctx->get_saved_variables();
    return {RotateHalf(grads[0], t[0], t[1], -1.0), torch::Tensor(), torch::Tensor()};
  }
};

// y = silu(g) * u. Keeps g and u for backward, not silu(g) as well (the composition keeps all
// three: one [tokens, intermediate] activation less per layer), and recomputes silu(g) there:
//   du = grad silu(g),  dg = silu'(g) grad u.
class SwiGluFn : public torch::autograd::Function<SwiGluFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& g, const torch::Tensor& u) {
    ctx->save_for_backward({g, u});
    return at::silu(g).mul_(u);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &g = s[0], &u = s[1];
    const auto& grad = grads[0];
    torch::Tensor dg, du;
    if (ctx->needs_input_grad(0)) dg = at::silu_backward(grad * u, g);
    if (ctx->needs_input_grad(1)) du = at::silu(g).mul_(grad);
    return {dg, du};
  }
};

}  // namespace

torch::Tensor FusedSwiGlu(const torch::Tensor& gate, const torch::Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes(), "FusedSwiGlu: gate ", gate.sizes(), " and up ", up.sizes(), " differ");
  return SwiGluFn::apply(gate, up);
}

torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return RmsNormFn::apply(x, w, eps);
}

torch::Tensor FusedRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return RopeFn::apply(x, cos, sin);
}

bool FusedAttentionAvailable() {
#ifdef MORE_HAVE_SDPA
  return true;
#else
  return false;
#endif
}

AttentionImpl DefaultAttentionImpl() {
  return FusedAttentionAvailable() ? AttentionImpl::kFused : AttentionImpl::kComposed;
}

namespace {

// The composed path's end: softmax over the last dimension in fp32 (double for double inputs,
// the tests' precision), then the probabilities times v.
torch::Tensor SoftmaxTimesV(const torch::Tensor& scores, const torch::Tensor& v) {  // scores [B, H, S, S]
  const auto acc = v.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto probs = torch::softmax(scores, -1, acc).to(v.scalar_type());
  return torch::matmul(probs, v);                                           // [B, H, S, hd]
}

}  // namespace

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              AttentionImpl impl) {
  if (impl == AttentionImpl::kAuto) impl = DefaultAttentionImpl();
  if (impl == AttentionImpl::kFused) {
#ifdef MORE_HAVE_SDPA
    // q is pre-scaled (the scale is folded into RoPE's tables), hence scale 1
    return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                            /*scale=*/1.0);
#else
    TORCH_CHECK(false, "fused attention needs LibTorch >= 2.1 (scaled_dot_product_attention)");
#endif
  }
  const int64_t b = q.size(0), h = q.size(1), s = q.size(2), hd = q.size(3);
  // scores = causal mask (0 / -inf) + q k^T in one batched GEMM (no separate scale / mask passes)
  auto mask = torch::full({s, s}, -std::numeric_limits<float>::infinity(), q.options()).triu(1);  // [S, S]
  auto scores = torch::baddbmm(mask, q.reshape({b * h, s, hd}), k.reshape({b * h, s, hd}).transpose(1, 2))
                    .view({b, h, s, s});                                    // [B, H, S, S]
  return SoftmaxTimesV(scores, v);
}

torch::Tensor SegmentCausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const torch::Tensor& allowed, AttentionImpl impl) {
  const int64_t b = q.size(0), h = q.size(1), s = q.size(2), hd = q.size(3);
  TORCH_CHECK(allowed.dim() == 4 && allowed.size(0) == b && allowed.size(1) == 1 && allowed.size(2) == s &&
                  allowed.size(3) == s && allowed.scalar_type() == torch::kBool,
              "SegmentCausalAttention: the mask must be [B, 1, S, S] bool, got ", allowed.sizes());
  if (impl == AttentionImpl::kAuto) impl = DefaultAttentionImpl();
  if (impl == AttentionImpl::kFused) {
#ifdef MORE_HAVE_SDPA
    return at::scaled_dot_product_attention(q, k, v, allowed, /*dropout_p=*/0.0, /*is_causal=*/false,
                                            /*scale=*/1.0);                 // [B, H, S, hd]
#else
    TORCH_CHECK(false, "fused attention needs LibTorch >= 2.1 (scaled_dot_product_attention)");
#endif
  }
  // the mask applied to the scores in place, broadcast over the heads (no [B*H, S, S] bias built)
  auto scores = torch::bmm(q.reshape({b * h, s, hd}), k.reshape({b * h, s, hd}).transpose(1, 2))
                    .view({b, h, s, s})                                     // [B, H, S, S]
                    .masked_fill_(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  return SoftmaxTimesV(scores, v);
}

}  // namespace more
