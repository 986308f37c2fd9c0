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

class VocabParallelNllFn : public torch::autograd::Function<VocabParallelNllFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits_local,
                               const torch::Tensor& targets, int64_t vocab_start, const Communicator* tp) {
    auto l = logits_local.to(torch::kFloat32);                             // [N, V/tp]
    const int64_t n = l.size(1);
    auto m = std::get<0>(l.max(1)).contiguous();                           // [N]
    if (tp->size() > 1) tp->AllReduceMax(m);
    auto e = (l - m.unsqueeze(1)).exp_();                                  // [N, V/tp]
    auto sum = e.sum(1);                                                   // [N]
    auto in_range = (targets >= vocab_start) & (targets < vocab_start + n);
    auto local = torch::where(in_range, targets - vocab_start, torch::zeros_like(targets)).unsqueeze(1);
    auto ly = l.gather(1, local).squeeze(1) * in_range.to(torch::kFloat32);  // [N]
    if (tp->size() > 1) {
      auto packed = torch::cat({sum, ly});
      tp->AllReduceSum(packed);
      sum = packed.narrow(0, 0, sum.size(0));
      ly = packed.narrow(0, sum.size(0), ly.size(0));
    }
    ctx->save_for_backward({e, sum, local, in_range});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits_local.scalar_type());
    return sum.log() + m - ly;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    auto &e = s[0], &sum = s[1], &local = s[2], &in_range = s[3];
    auto g = grads[0].to(torch::kFloat32);                                 // [N]
    auto d = e.mul_((g / sum).unsqueeze(1));                               // softmax * g, in place
    d.scatter_add_(1, local, (-g * in_range.to(torch::kFloat32)).unsqueeze(1));
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {d.to(dtype), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor VocabParallelNll(const torch::Tensor& logits_local, const torch::Tensor& targets,
                               int64_t vocab_start, const Communicator& tp) {
  return VocabParallelNllFn::apply(logits_local, targets, vocab_start, &tp);
}

}  // namespace more
