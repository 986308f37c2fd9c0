#include "more/model/fused_ops.h"

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

}  // namespace

torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return RmsNormFn::apply(x, w, eps);
}

torch::Tensor FusedRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return RopeFn::apply(x, cos, sin);
}

}  // namespace more
