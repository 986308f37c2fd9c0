#include "more/parallel/adapted_linear.h"

#include <map>
#include <string>

#include "more/parallel/tp_ops.h"

namespace more {

void ForwardContext::FlushContrastive() {
  // batches in the order their first module ran (deterministic on every rank)
  struct Batch {
    std::vector<const MoreAdapter*> mods;
    std::vector<torch::Tensor> pooled;
    const Communicator* tp;
  };
  std::vector<Batch> batches;
  std::map<std::string, size_t> index;  // ContrastiveBatchKey -> batches[i]
  for (auto& p : cl_pending) {
    const auto [it, added] = index.emplace(p.adapter->ContrastiveBatchKey(p.pooled), batches.size());
    if (added) batches.push_back({{}, {}, p.tp});
    batches[it->second].mods.push_back(p.adapter);
    batches[it->second].pooled.push_back(p.pooled);
  }
  cl_pending.clear();
  for (const auto& b : batches) cl_losses.push_back(MoreAdapter::ContrastiveLossBatch(b.mods, b.pooled, task, *b.tp).sum());
}

torch::Tensor ForwardContext::PoolWeights(torch::ScalarType dtype) {
  if (!pool_weights_.defined() || pool_weights_.scalar_type() != dtype)
    pool_weights_ = pool_matrix.defined() ? pool_matrix.to(dtype) : MeanPoolWeights(token_mask, dtype);
  return pool_weights_;
}

torch::Tensor ForwardContext::CachedPooled(const torch::Tensor& x, torch::ScalarType dtype) const {
  if (last_x_.defined() && last_x_.is_same(x) && last_pooled_.scalar_type() == dtype) return last_pooled_;
  return {};
}

void ForwardContext::StorePooled(const torch::Tensor& x, torch::Tensor pooled) {
  last_x_ = x;
  last_pooled_ = std::move(pooled);
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
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                                const torch::Tensor& weight, const torch::Tensor& a,
                                                const torch::Tensor& b, const torch::Tensor& w, double p,
                                                const torch::Tensor& x_adapter, const torch::Tensor& pool_w) {
    const int64_t d_in = x.size(-1);
    auto out_shape = x.sizes().vec();
    out_shape.back() = weight.size(0);
    auto x2 = x.reshape({-1, d_in});                                       // [N, d_in]
    auto y = x2.mm(weight.t());                                            // [N, d_out]
    auto xd = x_adapter.reshape({-1, d_in});                              // x in a's dtype (no grad)
    // the contrastive mean pool of x (before dropout), z = pool_w x: [B, 1, S] x [B, S, d_in];
    // sel [N, B] holds the same weights as a matrix (sel[b*S + j][b] = pool_w[b][0][j]) so that
    // backward adds dx += sel dz inside the adapter's dx GEMM
    torch::Tensor z, sel;
    if (pool_w.dim() == 2) {  // packed rows: one pool per example, pool_w [E, N]
      if (xd.is_cuda()) {
        z = pool_w.mm(xd);                                                 // [E, d_in]
      } else {
        // Each example pools only its own positions (~N of the E * N weights are non-zero), so on
        // the CPU z is summed over the non-zero weights: ~N * d_in multiply-adds instead of the
        // dense product's E * N * d_in (32x fewer with 32 examples; the dense [E, N] x [N, d_in]
        // product was ~4% of a packed 100m step, docs/benchmarks.md section 13). index_add_ is
        // sequential on the CPU (deterministic); on CUDA it is atomic, hence the dense product there.
        const auto nz = pool_w.nonzero();                                  // [K, 2]: (example, position)
        const auto e = nz.select(1, 0), j = nz.select(1, 1);               // [K], [K]
        const auto wk = pool_w.index({e, j}).unsqueeze(1);                 // [K, 1]
        z = torch::zeros({pool_w.size(0), d_in}, xd.options())
                .index_add_(0, e, xd.index_select(0, j).mul_(wk));          // [E, d_in]
      }
      sel = pool_w.t().contiguous();                                       // [N, E]
    } else if (pool_w.numel() > 0) {
      const int64_t nb = pool_w.size(0), ns = pool_w.size(2);
      z = torch::bmm(pool_w, xd.view({nb, ns, d_in})).squeeze(1);          // [B, d_in]
      sel = torch::zeros({nb * ns, nb}, pool_w.options());
      sel.view({nb, ns, nb}).diagonal(0, 0, 2).copy_(pool_w.squeeze(1).t());
    } else {
      z = torch::empty({0}, a.options());
    }
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
    ctx->save_for_backward({weight.requires_grad() ? x2 : torch::Tensor(), xd, noise, v, weight, a, b, w, sel});
    return {y.view(out_shape), z};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &x2 = s[0], &xd = s[1], &noise = s[2], &v = s[3], &weight = s[4], &a = s[5], &b = s[6], &w = s[7],
               &sel = s[8];
    const auto& dz = grads.size() > 1 ? grads[1] : torch::Tensor();        // [B, d_in] of the pooled output
    const bool pooled = sel.defined() && dz.defined();
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
      const auto dt = dx.scalar_type();
      if (!noise.defined()) {  // (bf16 base: dv and a rounded to bf16, as in forward)
        // the adapter's and the pooling's input gradients in one GEMM: [dv | sel] [a ; dz]
        auto lhs = pooled ? torch::cat({dv, sel}, 1) : dv;                 // [N, rt (+ B)]
        auto rhs = pooled ? torch::cat({a, dz.to(a.scalar_type())}, 0) : a;  // [rt (+ B), d_in]
        dx.addmm_(lhs.to(dt), rhs.to(dt));
      } else {
        auto dxa = dv.mm(a).mul_(noise);
        dx.add_(dxa.to(dt));
        if (pooled) dx.addmm_(sel.to(dt), dz.to(dt));
      }
      auto shape = grads[0].sizes().vec();
      shape.back() = weight.size(1);
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(1)) dw_base = g.t().mm(x2);                  // [d_out, d_in]
    return {dx, dw_base, da, db, dw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> LoraLinearPooled(const torch::Tensor& x, const torch::Tensor& weight,
                                                         const MoreAdapter::Factors& f, const torch::Tensor& x_adapter,
                                                         const torch::Tensor& pool_weights) {
  if (x_adapter.defined())
    TORCH_CHECK(x_adapter.sizes() == x.sizes() && x_adapter.scalar_type() == f.a.scalar_type() &&
                    !x_adapter.requires_grad(),
                "LoraLinear: x_adapter must be x's no-grad copy in the factors' dtype");
  if (pool_weights.defined() && pool_weights.dim() == 2) {
    TORCH_CHECK(x.dim() == 3 && pool_weights.size(1) == x.size(0) * x.size(1) &&
                    pool_weights.scalar_type() == f.a.scalar_type(),
                "LoraLinear: a pool matrix must be [E, B*S] for x [B, S, d] in the factors' dtype");
  } else if (pool_weights.defined()) {
    TORCH_CHECK(x.dim() == 3 && pool_weights.dim() == 3 && pool_weights.size(0) == x.size(0) &&
                    pool_weights.size(1) == 1 && pool_weights.size(2) == x.size(1) &&
                    pool_weights.scalar_type() == f.a.scalar_type(),
                "LoraLinear: pool weights must be [B, 1, S] for x [B, S, d] in the factors' dtype");
  }
  // (an autograd Function takes no undefined tensor input: the copy is made here when not given,
  //  and "no pooling" is an empty tensor)
  torch::Tensor xa = x_adapter;
  if (!xa.defined()) {
    torch::NoGradGuard ng;
    xa = x.scalar_type() == f.a.scalar_type() ? x.detach() : x.detach().to(f.a.scalar_type());
  }
  auto pw = pool_weights.defined() ? pool_weights : torch::empty({0}, f.a.options().requires_grad(false));
  auto out = LoraLinearFn::apply(x, weight, f.a, f.b, f.w, f.dropout, xa, pw);
  return {out[0], pool_weights.defined() ? out[1] : torch::Tensor()};
}

torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight, const MoreAdapter::Factors& f,
                         const torch::Tensor& x_adapter) {
  return LoraLinearPooled(x, weight, f, x_adapter, {}).first;
}

AdaptedLinear::AdaptedLinear(torch::Tensor weight_local, ParallelKind kind, MoreAdapter* adapter,
                             const Communicator* tp, torch::Tensor bias_local)
    : weight_(std::move(weight_local)), bias_(std::move(bias_local)), kind_(kind), adapter_(adapter), tp_(tp) {
  TORCH_CHECK(!bias_.defined() || (kind_ == ParallelKind::kColumn && bias_.dim() == 1 &&
                                   bias_.size(0) == weight_.size(0)),
              "AdaptedLinear: a bias must be column-parallel and [d_out/tp]");
}

torch::Tensor AdaptedLinear::Forward(const torch::Tensor& x, ForwardContext& ctx) const {
  torch::Tensor y;                                                         // [.., d_out/tp] or partial [.., d_out]
  if (!adapter_) {
    y = torch::matmul(x, weight_.t());
  } else {
    auto f = adapter_->FactorsFor(ctx.task, ctx.training);
    const auto master = f.a.scalar_type();                                 // the parameters' (fp32)
    if (compute_dtype_ != torch::ScalarType::Undefined && compute_dtype_ != master) {
      // adapter.dtype: autograd casts of the [r_t, d_in], [d_out, r_t] and [r_t] | 0-dim factors
      f.a = f.a.to(compute_dtype_);
      f.b = f.b.to(compute_dtype_);
      f.w = f.w.to(compute_dtype_);
    }
    const auto ad = f.a.scalar_type();
    // the contrastive pooling of x is made by the first module that reads x (q of q/k/v, gate of
    // gate/up), inside its node (in ad), kept in the parameters' dtype; the others reuse it
    torch::Tensor pooled = ctx.contrastive ? ctx.CachedPooled(x, master) : torch::Tensor();
    const bool pool_here = ctx.contrastive && !pooled.defined();
    auto [out, z] = LoraLinearPooled(x, weight_, f, x.scalar_type() == ad ? torch::Tensor() : ctx.AdapterInput(x, ad),
                                     pool_here ? ctx.PoolWeights(ad) : torch::Tensor());
    y = out;
    if (pool_here) {
      pooled = z.scalar_type() == master ? z : z.to(master);              // [B, d_in(/tp)]
      ctx.StorePooled(x, pooled);
    }
    if (ctx.contrastive) ctx.cl_pending.push_back({adapter_, pooled, tp_});  // loss at FlushContrastive
  }
  if (bias_.defined()) y = y + bias_;                                      // [.., d_out/tp] + [d_out/tp]
  if (kind_ == ParallelKind::kRow) y = ReduceFromTp(y, *tp_);
  return y;
}

}  // namespace more
