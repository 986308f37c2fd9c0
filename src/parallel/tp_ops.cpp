#include "more/parallel/tp_ops.h"

namespace more {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const Communicator& CommOf(AutogradContext* ctx) {
  return *reinterpret_cast<const Communicator*>(ctx->saved_data["comm"].toInt());
}

torch::Tensor AllReduced(const torch::Tensor& x, const Communicator& c) {
  auto y = x.contiguous().clone();
  c.AllReduceSum(y);
  return y;
}

struct CopyToTpFn : torch::autograd::Function<CopyToTpFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {AllReduced(g[0], CommOf(ctx)), torch::Tensor()};
  }
};

struct ReduceFromTpFn : torch::autograd::Function<ReduceFromTpFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, int64_t comm) {
    return AllReduced(x, *reinterpret_cast<const Communicator*>(comm));
  }
  static variable_list backward(AutogradContext*, variable_list g) { return {g[0], torch::Tensor()}; }
};

struct GatherFromTpFn : torch::autograd::Function<GatherFromTpFn> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    const auto& c = *reinterpret_cast<const Communicator*>(comm);
    // [.., n/tp] -> gather as [tp, .., n/tp] -> [.., n]
    auto in = x.contiguous();
    std::vector<int64_t> shape{c.size()};
    for (auto s : in.sizes()) shape.push_back(s);
    auto out = torch::empty(shape, in.options());
    c.AllGather(in, out);
    return out.movedim(0, -2).flatten(-2);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto& c = CommOf(ctx);
    auto n = g[0].size(-1) / c.size();
    return {g[0].narrow(-1, c.rank() * n, n).contiguous(), torch::Tensor()};
  }
};

int64_t Ptr(const Communicator& c) { return reinterpret_cast<int64_t>(&c); }

}  // namespace

torch::Tensor CopyToTp(const torch::Tensor& x, const Communicator& tp) {
  return tp.size() == 1 ? x : CopyToTpFn::apply(x, Ptr(tp));
}
torch::Tensor ReduceFromTp(const torch::Tensor& x, const Communicator& tp) {
  return tp.size() == 1 ? x : ReduceFromTpFn::apply(x, Ptr(tp));
}
torch::Tensor GatherFromTp(const torch::Tensor& x, const Communicator& tp) {
  return tp.size() == 1 ? x : GatherFromTpFn::apply(x, Ptr(tp));
}

}  // namespace more
