#include "more/parallel/adapted_linear.h"

#include "more/parallel/tp_ops.h"

namespace more {
namespace {

// z = weights x over the sequence (MeanPool) for a bf16 x, reading the adapters' fp32 copy xa of
// x instead of casting x again: z [B, d] = bmm(weights [B, 1, S], xa [B, S, d]). Backward:
// dx = weights^T dz, an outer product per row made directly in x's dtype. Keeps only the
// weights for backward (autograd's x.to(fp32) then bmm keeps a second fp32 copy of x).
class MeanPoolFn : public torch::autograd::Function<MeanPoolFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& xa,
                               const torch::Tensor& weights) {
    ctx->save_for_backward({weights});
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return torch::bmm(weights, xa).squeeze(1);                             // [B, d]
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    const auto w = ctx->get_saved_variables()[0].transpose(1, 2).to(dtype);  // [B, S, 1]
    return {w * grads[0].unsqueeze(1).to(dtype), torch::Tensor(), torch::Tensor()};  // [B, S, d]
  }
};

}  // namespace

torch::Tensor ForwardContext::Pooled(const torch::Tensor& x, torch::ScalarType dtype) {
  if (last_x_.defined() && last_x_.is_same(x) && last_pooled_.scalar_type() == dtype) return last_pooled_;
  if (!pool_weights_.defined() || pool_weights_.scalar_type() != dtype) pool_weights_ = MeanPoolWeights(token_mask, dtype);
  last_x_ = x;
  last_pooled_ = x.scalar_type() == dtype || x.dim() != 3 ? MeanPool(x, pool_weights_)
                                                          : MeanPoolFn::apply(x, AdapterInput(x, dtype), pool_weights_);
  return last_pooled_;
}

torch::Tensor ForwardContext::AdapterInput(const torch::Tensor& x, torch::ScalarType dtype) {
  if (cast_x_.defined() && cast_x_.is_same(x) && cast_.scalar_type() == dtype) return cast_;
  torch::NoGradGuard ng;
  cast_x_ = x;
  cast_ = x.detach().to(dtype);
  return cast_;
}

namespace {

// Inputs: x [.., d_in], W [d_out, d_in], a [rt, d_in], b [d_out, rt], w [rt] | 0-dim; p: dropout;
// x_adapter: x in the dtype of a (no grad).
// Saved: x (the base GEMM's input, only if W requires grad: dW), xd = dropout(x) in the
// adapter dtype (for da; x's storage when no cast and no dropout, the shared copy of
// ForwardContext::AdapterInput with a bf16 base), the dropout scale
// tensor, v = xd a^T [N, rt] (for dw), and W, a, b, w.
class LoraLinearFn : public torch::autograd::Function<LoraLinearFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& w, double p, const torch::Tensor& x_adapter) {
    const int64_t d_in = x.size(-1);
    auto out_shape = x.sizes().vec();
    out_shape.back() = weight.size(0);
    auto x2 = x.reshape({-1, d_in});                                       // [N, d_in]
    auto y = x2.mm(weight.t());                                            // [N, d_out]
    auto xd = x_adapter.reshape({-1, d_in});                              // x in a's dtype (no grad)
    torch::Tensor noise;
    if (p > 0) {  // the draws of torch::dropout: noise ~ Bernoulli(1 - p) / (1 - p)
      noise = torch::empty_like(xd).bernoulli_(1 - p).div_(1 - p);
      xd = xd * noise;
    }
    auto v = xd.mm(a.t());                                                 // [N, rt]
    auto u = v * w;
    // With a bf16 base the up-projection accumulates into y inside one bf16 GEMM (fp32
    // accumulation, one rounding of the sum), instead of an fp32 [N, d_out] product, a cast and
    // an add: u and b are rounded to bf16 first, an error of ~2^-8 of the adapter term, which is
    // itself small next to y, whose own rounding is 2^-9 of |y|.
    if (u.scalar_type() == y.scalar_type())
      y.addmm_(u, b.t());
    else
      y.addmm_(u.to(y.scalar_type()), b.t().to(y.scalar_type()));
    // (a frozen base needs no x for backward: with a bf16 base, keeping it would add a bf16 copy
    //  of every module input next to the fp32 xd)
    ctx->save_for_backward({weight.requires_grad() ? x2 : torch::Tensor(), xd, noise, v, weight, a, b, w});
    return y.view(out_shape);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &x2 = s[0], &xd = s[1], &noise = s[2], &v = s[3], &weight = s[4], &a = s[5], &b = s[6], &w = s[7];
    auto g = grads[0].reshape({-1, weight.size(0)});                       // [N, d_out]
    auto gf = g.scalar_type() == b.scalar_type() ? g : g.to(b.scalar_type());
    // The two GEMMs with a long d_out side are written in the orientation the BLAS runs fast:
    // b is a column slice of B [d_out, r] (rows of stride r), so du reads a contiguous copy of
    // b^T, and db is computed as (v w)^T g (an [rt, d_out] result, returned transposed) rather
    // than g^T (v w). Same products in fp32; with oneDNN (LibTorch 2.x) 2.5x and 4-10x faster
    // at d_out = 768 / 2048 than the straightforward forms (docs/benchmarks.md section 10).
    auto du = gf.mm(b.t().contiguous().t());                               // [N, rt]
    torch::Tensor dx, dw_base, da, db, dw;
    if (ctx->needs_input_grad(3)) db = (v * w).t().mm(gf).t();            // [d_out, rt]
    if (ctx->needs_input_grad(4)) dw = w.dim() == 0 ? (du * v).sum() : (du * v).sum(0);
    auto dv = du * w;                                                      // [N, rt]
    if (ctx->needs_input_grad(2)) da = dv.t().mm(xd);                     // [rt, d_in]
    if (ctx->needs_input_grad(0)) {
      dx = g.mm(weight);                                                   // [N, d_in]
      if (!noise.defined()) {  // (bf16 base: dv and a rounded to bf16, as in forward)
        dx.addmm_(dv.scalar_type() == dx.scalar_type() ? dv : dv.to(dx.scalar_type()), a.to(dx.scalar_type()));
      } else {
        auto dxa = dv.mm(a);
        if (noise.defined()) dxa.mul_(noise);
        dx.add_(dxa.to(dx.scalar_type()));
      }
      auto shape = grads[0].sizes().vec();
      shape.back() = weight.size(1);
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(1)) dw_base = g.t().mm(x2);                  // [d_out, d_in]
    return {dx, dw_base, da, db, dw, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight, const MoreAdapter::Factors& f,
                         const torch::Tensor& x_adapter) {
  if (x_adapter.defined())
    TORCH_CHECK(x_adapter.sizes() == x.sizes() && x_adapter.scalar_type() == f.a.scalar_type() &&
                    !x_adapter.requires_grad(),
                "LoraLinear: x_adapter must be x's no-grad copy in the factors' dtype");
  // (an autograd Function takes no undefined tensor input: the copy is made here when not given)
  torch::Tensor xa = x_adapter;
  if (!xa.defined()) {
    torch::NoGradGuard ng;
    xa = x.scalar_type() == f.a.scalar_type() ? x.detach() : x.detach().to(f.a.scalar_type());
  }
  return LoraLinearFn::apply(x, weight, f.a, f.b, f.w, f.dropout, xa);
}

AdaptedLinear::AdaptedLinear(torch::Tensor weight_local, ParallelKind kind, MoreAdapter* adapter,
                             const Communicator* tp)
    : weight_(std::move(weight_local)), kind_(kind), adapter_(adapter), tp_(tp) {}

torch::Tensor AdaptedLinear::Forward(const torch::Tensor& x, ForwardContext& ctx) const {
  torch::Tensor y;                                                         // [.., d_out/tp] or partial [.., d_out]
  if (!adapter_) {
    y = torch::matmul(x, weight_.t());
  } else {
    const auto f = adapter_->FactorsFor(ctx.task, ctx.training);
    const auto ad = f.a.scalar_type();
    y = LoraLinear(x, weight_, f, x.scalar_type() == ad ? torch::Tensor() : ctx.AdapterInput(x, ad));
    if (ctx.contrastive)
      ctx.cl_losses.push_back(adapter_->ContrastiveLossPooled(ctx.Pooled(x, adapter_->A.scalar_type()), ctx.task, *tp_));
  }
  if (kind_ == ParallelKind::kRow) y = ReduceFromTp(y, *tp_);
  return y;
}

}  // namespace more
