// The gate's logits computed independently of the code under test, for the tests that check which
// expert a hard gate chooses (test_selection_cache, test_frozen_gate): plain copies of the
// parameters on the host, summed in long double.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace more::testing {

// [rows][n_experts]: logit[t][k] = sum_i gate_w[k][i] e[t][i] + gate_b[k], for every row t of e.
inline std::vector<std::vector<long double>> ReferenceGateLogits(const torch::Tensor& gate_w,
                                                                 const torch::Tensor& gate_b,
                                                                 const torch::Tensor& e) {
  const auto w = gate_w.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const auto b = gate_b.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const auto x = e.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const auto* pw = w.data_ptr<double>();
  const auto* pb = b.data_ptr<double>();
  const auto* px = x.data_ptr<double>();
  const int64_t n_exp = w.size(0), d = w.size(1), rows = x.size(0);
  std::vector<std::vector<long double>> out(static_cast<size_t>(rows), std::vector<long double>(static_cast<size_t>(n_exp)));
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t k = 0; k < n_exp; ++k) {
      long double s = pb[k];
      for (int64_t i = 0; i < d; ++i) s += static_cast<long double>(pw[k * d + i]) * px[t * d + i];
      out[static_cast<size_t>(t)][static_cast<size_t>(k)] = s;
    }
  return out;
}

}  // namespace more::testing
