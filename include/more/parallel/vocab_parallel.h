// Vocabulary-parallel embedding and cross-entropy (Megatron-LM style). The vocabulary is split
// in contiguous ranges: TP rank i owns ids [i*V/tp, (i+1)*V/tp).
//
// Embedding:  y = ReduceFromTp( E_loc[id - start] if id in range else 0 )      [.., D]
// Cross-entropy of the LM head without gathering the vocabulary, as one autograd node that also
// does the head's GEMM, l_loc = x W_loc^T [N, V/tp] (the collectives run in forward only):
//   m    = all-reduce-max(max_j l)                       [N]
//   e    = exp(l_loc - m);  S = all-reduce-sum(sum_j e)  [N]
//   l_y  = all-reduce-sum(l_loc[y - start] if y in range else 0)
//   nll  = log S + m - l_y                               [N]
// Backward is local: d nll / d l_loc = e / S - onehot_loc(y), scaled by the incoming gradient,
// computed in place in the saved e (one pass; no [N, V] zeros + scatter + log-softmax backward),
// then d x = d l W_loc and d W_loc = d l^T x.
#pragma once
#include <torch/torch.h>

#include "more/dist/communicator.h"

namespace more {

// ids [..] int64; weight_local [V/tp, D]; returns [.., D].
torch::Tensor VocabParallelEmbedding(const torch::Tensor& ids, const torch::Tensor& weight_local,
                                     int64_t vocab_start, const Communicator& tp);
// x [N, D] and W_loc [V/tp, D] in the base dtype (logits and loss in fp32); targets [N] int64;
// returns nll [N] fp32. The logits buffer itself becomes the saved exp(l - m), so only one
// [N, V/tp] fp32 tensor lives from forward to backward; gradients reach x and W_loc.
torch::Tensor LinearVocabParallelNll(const torch::Tensor& x, const torch::Tensor& weight_local,
                                     const torch::Tensor& targets, int64_t vocab_start, const Communicator& tp);

}  // namespace more
