#include "more/parallel/vocab_parallel.h"

#include "more/parallel/tp_ops.h"

namespace more {

torch::Tensor VocabParallelEmbedding(const torch::Tensor& ids, const torch::Tensor& weight_local,
                                     int64_t vocab_start, const Communicator& tp) {
  if (tp.size() == 1) return torch::embedding(weight_local, ids);
  const int64_t n = weight_local.size(0);
  auto in_range = (ids >= vocab_start) & (ids < vocab_start + n);          // [..]
  auto local = torch::where(in_range, ids - vocab_start, torch::zeros_like(ids));
  auto y = torch::embedding(weight_local, local) * in_range.unsqueeze(-1).to(weight_local.scalar_type());
  return ReduceFromTp(y, tp);                                               // [.., D]
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The cross-entropy's forward on fp32 logits `l` that it may overwrite: l becomes
// e = exp(l - m) in place (the only [N, V/tp] buffer kept for backward).
struct NllState {
  torch::Tensor e, sum, local, in_range, nll;
};
NllState NllForward(torch::Tensor l, const torch::Tensor& targets, int64_t vocab_start, const Communicator& tp) {
  NllState st;
  const int64_t n = l.size(1);
  auto m = std::get<0>(l.max(1)).contiguous();                             // [N]
  if (tp.size() > 1) tp.AllReduceMax(m);
  st.in_range = (targets >= vocab_start) & (targets < vocab_start + n);
  st.local = torch::where(st.in_range, targets - vocab_start, torch::zeros_like(targets)).unsqueeze(1);
  auto ly = l.gather(1, st.local).squeeze(1) * st.in_range.to(torch::kFloat32);  // [N], before l is overwritten
  st.e = l.sub_(m.unsqueeze(1)).exp_();                                    // [N, V/tp]
  st.sum = st.e.sum(1);                                                    // [N]
  if (tp.size() > 1) {
    auto packed = torch::cat({st.sum, ly});
    tp.AllReduceSum(packed);
    st.sum = packed.narrow(0, 0, st.sum.size(0));
    ly = packed.narrow(0, st.sum.size(0), ly.size(0));
  }
  st.nll = st.sum.log() + m - ly;
  return st;
}

// d nll / d logits (times the incoming g [N]) = e / S * g - onehot * g, in place in e.
torch::Tensor NllBackward(torch::Tensor e, const torch::Tensor& sum, const torch::Tensor& local,
                          const torch::Tensor& in_range, const torch::Tensor& grad) {
  auto g = grad.to(torch::kFloat32);
  auto d = e.mul_((g / sum).unsqueeze(1));
  return d.scatter_add_(1, local, (-g * in_range.to(torch::kFloat32)).unsqueeze(1));
}

// The LM head's GEMM and the cross-entropy: logits are made into the buffer that becomes e, so
// no second [N, V/tp] tensor exists (with a bf16 base: the bf16 logits are freed at the cast).
class LinearNllFn : public torch::autograd::Function<LinearNllFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t vocab_start, const Communicator* tp) {
    auto st = NllForward(x.mm(weight.t()).to(torch::kFloat32), targets, vocab_start, *tp);
    ctx->save_for_backward({st.e, st.sum, st.local, st.in_range, x, weight});
    return st.nll;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const auto &x = s[4], &weight = s[5];
    auto d = NllBackward(s[0], s[1], s[2], s[3], grads[0]).to(weight.scalar_type());  // [N, V/tp]
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = d.mm(weight);
    if (ctx->needs_input_grad(1)) dw = d.t().mm(x);
    return {dx, dw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LinearVocabParallelNll(const torch::Tensor& x, const torch::Tensor& weight_local,
                                     const torch::Tensor& targets, int64_t vocab_start, const Communicator& tp) {
  return LinearNllFn::apply(x, weight_local, targets, vocab_start, &tp);
}

}  // namespace more
