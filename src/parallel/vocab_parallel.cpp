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

torch::Tensor VocabParallelNll(const torch::Tensor& logits_local, const torch::Tensor& targets,
                               int64_t vocab_start, const Communicator& tp) {
  auto l = logits_local.to(torch::kFloat32);                               // [N, V/tp]
  if (tp.size() == 1)
    return torch::nn::functional::cross_entropy(
        l, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const int64_t n = l.size(1);
  auto m = std::get<0>(l.detach().max(1)).contiguous();                    // [N]
  tp.AllReduceMax(m);
  auto sum_exp = ReduceFromTp(torch::exp(l - m.unsqueeze(1)).sum(1), tp);  // [N]
  auto in_range = (targets >= vocab_start) & (targets < vocab_start + n);
  auto local = torch::where(in_range, targets - vocab_start, torch::zeros_like(targets));
  auto ly = l.gather(1, local.unsqueeze(1)).squeeze(1) * in_range.to(torch::kFloat32);
  ly = ReduceFromTp(ly, tp);                                                // [N]
  return torch::log(sum_exp) + m - ly;
}

}  // namespace more
