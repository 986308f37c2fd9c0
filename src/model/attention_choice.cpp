#include "more/model/attention_choice.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include "more/core/error.h"
#include "more/core/log.h"

namespace more {

const char* AttentionName(AttentionImpl impl) {
  switch (impl) {
    case AttentionImpl::kFused: return "fused";
    case AttentionImpl::kComposed: return "composed";
    case AttentionImpl::kAuto: break;
  }
  return "auto";
}

AttentionImpl ParseAttentionImpl(const std::string& name, const std::string& what) {
  if (name == "fused") return AttentionImpl::kFused;
  if (name == "composed") return AttentionImpl::kComposed;
  throw Error(fmt::format("{}: attention implementation '{}' is not fused or composed", what, name));
}

std::vector<AttentionImpl> AttentionCandidates() {
  std::vector<AttentionImpl> c{DefaultAttentionImpl()};
  if (c.front() != AttentionImpl::kComposed) c.push_back(AttentionImpl::kComposed);
  return c;
}

std::string AttentionChoice::Describe() const {
  std::string times;
  for (const auto& [impl, s] : seconds) times += fmt::format(" {} {:.2f} ms", AttentionName(impl), s * 1e3);
  return fmt::format("attention: {} ({}{}{})", AttentionName(impl), how, times.empty() ? "" : ";", times);
}

namespace {

// `layers` forwards of one implementation (each keeping what its backward needs, as a stage's
// layers do: the composed scores of the first are out of the caches when its backward runs), then
// their backward; seconds per layer (the device synchronised on a GPU).
double TimeOnce(AttentionImpl impl, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const torch::Tensor& grad, int64_t layers) {
  for (auto t : {q, k, v}) t.mutable_grad() = torch::Tensor();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> outs;
  for (int64_t l = 0; l < layers; ++l) outs.push_back(CausalAttention(q, k, v, impl));  // [B, H, S, hd] each
  torch::autograd::backward(outs, std::vector<torch::Tensor>(outs.size(), grad));
  if (q.is_cuda()) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(layers);
}

}  // namespace

AttentionChoice MeasureAttention(const std::vector<AttentionImpl>& candidates, const AttentionShape& shape,
                                 torch::ScalarType dtype, torch::Device device, const Communicator& comm, int iters,
                                 double margin) {
  MORE_CHECK(!candidates.empty(), "MeasureAttention: no candidates");
  AttentionChoice c;
  c.impl = candidates.front();
  if (candidates.size() == 1) {
    c.how = "the only implementation this build has";
    return c;
  }
  // random inputs of the run's shape; a fixed generator, so the measurement draws nothing from the
  // global one (the run's dropout stream stays as it was)
  auto gen = at::detail::createCPUGenerator(12345);
  auto make = [&](double scale) {
    auto t = torch::empty({shape.batch, shape.heads, shape.seq, shape.head_dim}, torch::kFloat32)
                 .normal_(0.0, scale, gen);
    return t.to(torch::TensorOptions(dtype).device(device)).requires_grad_(true);
  };
  auto q = make(1.0 / std::sqrt(static_cast<double>(shape.head_dim))), k = make(1.0), v = make(1.0);
  torch::Tensor grad;
  {
    torch::NoGradGuard ng;
    grad = make(1.0).detach();
  }
  // at least `iters` timed rounds, and more (up to 50) until they took 0.1 s: small shapes (a few
  // hundred microseconds each) get enough rounds for a stable fastest time
  std::vector<double> best(candidates.size(), std::numeric_limits<double>::infinity());
  double timed = 0;  // seconds of the timed rounds
  int rounds = 0;
  for (int it = 0;; ++it) {  // round 0: the warm-up
    double round = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const double s = TimeOnce(candidates[i], q, k, v, grad, std::max<int64_t>(1, shape.layers));
      round += s;
      if (it > 0) best[i] = std::min(best[i], s);
    }
    if (it == 0) continue;
    timed += round;
    if (++rounds >= iters && (timed >= 0.1 || rounds >= 50)) break;
  }
  auto t = torch::tensor(best, torch::kFloat64);
  comm.AllReduceMax(t);
  const auto* p = t.data_ptr<double>();
  size_t pick = 0;
  for (size_t i = 1; i < candidates.size(); ++i)
    if (p[i] < p[pick] * (1.0 - margin)) pick = i;
  for (size_t i = 0; i < candidates.size(); ++i) c.seconds.emplace_back(candidates[i], p[i]);
  c.impl = candidates[pick];
  c.how = fmt::format("measured at [{}, {}, {}, {}] {} x {} layers, forward + backward, fastest of {} rounds, "
                      "max over {} rank(s); {} unless another is faster by > {:.0f}%",
                      shape.batch, shape.heads, shape.seq, shape.head_dim, c10::toString(dtype),
                      std::max<int64_t>(1, shape.layers), rounds, comm.size(),
                      AttentionName(candidates.front()), margin * 100);
  return c;
}

AttentionChoice ResolveAttention(const std::string& setting, const std::string& recorded, const std::string& source,
                                 const AttentionShape& shape, torch::ScalarType dtype, torch::Device device,
                                 const Communicator& comm) {
  auto check_available = [](AttentionImpl impl, const std::string& who, const std::string& hint) {
    if (impl == AttentionImpl::kFused && !FusedAttentionAvailable())
      throw Error(fmt::format("{} needs fused attention (scaled_dot_product_attention, LibTorch >= 2.1); this "
                              "build's LibTorch is {}", who, TORCH_VERSION), hint);
  };
  AttentionChoice c;
  if (setting != "auto" && setting != "measure") {
    c.impl = ParseAttentionImpl(setting, "model.attention");
    check_available(c.impl, "model.attention=" + setting, "use model.attention=auto, measure or composed");
    c.how = "model.attention=" + setting;
    if (!recorded.empty() && recorded != setting)
      spdlog::warn("resuming '{}' with model.attention={}, but that run computed with {}: the result will differ "
                   "in the last bits from an uninterrupted run", source, setting, recorded);
    return c;
  }
  if (!recorded.empty()) {
    c.impl = ParseAttentionImpl(recorded, source + ": attention");
    check_available(c.impl, fmt::format("resuming '{}' (its run computed attention with {})", source, recorded),
                    "resume with the LibTorch >= 2.1 build, or set model.attention=composed to change it "
                    "deliberately (the run then differs in its last bits from an uninterrupted one)");
    c.how = "the choice of the run resumed from " + source;
    return c;
  }
  if (setting == "auto") {  // the fixed rule: the same choice in every fresh run of this build
    c.impl = DefaultAttentionImpl();
    c.how = "model.attention=auto (fused where this LibTorch has it, else composed)";
    return c;
  }
  return MeasureAttention(AttentionCandidates(), shape, dtype, device, comm);
}

}  // namespace more
