#include "more/train/pipeline.h"

#include "more/core/error.h"

namespace more {

Pipeline::Pipeline(const LlamaStage& stage, const ProcessGrid& grid, std::string schedule)
    : stage_(stage), grid_(grid), schedule_(std::move(schedule)) {
  MORE_CHECK(schedule_ == "1f1b" || schedule_ == "gpipe", "unknown pipeline schedule '{}'", schedule_);
}

std::vector<std::pair<bool, int>> Pipeline::Order(const std::string& schedule, int p, int r, int m) {
  std::vector<std::pair<bool, int>> order;
  if (schedule == "gpipe") {
    for (int i = 0; i < m; ++i) order.emplace_back(true, i);
    for (int i = 0; i < m; ++i) order.emplace_back(false, i);
    return order;
  }
  const int warmup = std::min(p - r - 1, m);
  int f = 0, b = 0;
  for (; f < warmup; ++f) order.emplace_back(true, f);
  while (f < m) {
    order.emplace_back(true, f++);
    order.emplace_back(false, b++);
  }
  while (b < m) order.emplace_back(false, b++);
  return order;
}

namespace {
int FwdTag(int i) { return 2 * i; }
int BwdTag(int i) { return 2 * i + 1; }
}  // namespace

Pipeline::Sums Pipeline::TrainStep(const std::vector<BatchTensors>& batches, double gen_scale, double cl_scale,
                                   bool contrastive, int64_t num_modules) {
  const int p = grid_.layout().pp, r = grid_.pp_rank(), m = static_cast<int>(batches.size());
  const auto& pp = grid_.pp();
  const int64_t d = stage_.config().hidden_size;
  struct Live {
    torch::Tensor input;   // received activation (requires grad), undefined on the first stage
    torch::Tensor output;  // this stage's output (not last) or its scalar loss (last)
    torch::Tensor cl;      // this stage's contrastive term, scaled (undefined if none)
  };
  std::vector<Live> live(m);
  std::vector<std::unique_ptr<PendingSend>> sends;
  // loss sums stay on the device until the end of the step: no host sync per micro-batch
  torch::Tensor gen_acc, cl_acc;
  auto accumulate = [](torch::Tensor& acc, const torch::Tensor& v) {
    auto d = v.detach().to(torch::kFloat64);
    acc = acc.defined() ? acc + d : d;
  };
  for (auto [forward, i] : Order(schedule_, p, r, m)) {
    const auto& b = batches[i];
    if (forward) {
      ForwardContext ctx;
      ctx.task = b.task;
      ctx.training = true;
      ctx.token_mask = b.token_mask;
      ctx.positions = b.positions;  // packed rows (undefined otherwise)
      ctx.attn_mask = b.attn_mask;
      ctx.pool_matrix = b.pool_matrix;
      ctx.contrastive = contrastive && num_modules > 0;
      torch::Tensor h;
      if (grid_.first_stage()) {
        h = stage_.Embed(b.ids);
      } else {
        auto in = torch::empty({b.ids.size(0), b.ids.size(1), d},
                               torch::TensorOptions().dtype(stage_.dtype()).device(stage_.device()));
        pp.Recv(in, r - 1, FwdTag(i));                                      // [B, L, D]
        live[i].input = in.requires_grad_(true);
        h = live[i].input;
      }
      h = stage_.Layers(h, ctx);
      if (ctx.contrastive && !ctx.cl_losses.empty()) {
        auto cl = torch::stack(ctx.cl_losses).sum() / static_cast<double>(num_modules);
        accumulate(cl_acc, cl);
        live[i].cl = cl * cl_scale;
      }
      if (grid_.last_stage()) {
        // the LM head and cross-entropy on the labelled rows only (loss_mask is 0/1)
        auto gen_sum = stage_.TokenNllAt(h, b.label_pos, b.label_targets).sum();
        accumulate(gen_acc, gen_sum);
        live[i].output = gen_sum * gen_scale;
        if (live[i].cl.defined()) live[i].output = live[i].output + live[i].cl;
      } else {
        sends.push_back(pp.ISend(h.detach().contiguous(), r + 1, FwdTag(i)));
        live[i].output = h;
      }
    } else {
      if (grid_.last_stage()) {
        live[i].output.backward();
      } else {
        auto grad = torch::empty_like(live[i].output, torch::TensorOptions().requires_grad(false));
        pp.Recv(grad, r + 1, BwdTag(i));
        std::vector<torch::Tensor> outs{live[i].output}, grads{grad};
        if (live[i].cl.defined()) {
          outs.push_back(live[i].cl);
          grads.push_back(torch::ones_like(live[i].cl));
        }
        torch::autograd::backward(outs, grads);
      }
      if (!grid_.first_stage()) sends.push_back(pp.ISend(live[i].input.grad().contiguous(), r - 1, BwdTag(i)));
      live[i] = Live{};  // free this micro-batch's activations
    }
  }
  for (auto& s : sends) s->Wait();
  Sums sums;
  if (gen_acc.defined()) sums.gen_sum = gen_acc.item<double>();
  if (cl_acc.defined()) sums.cl_sum = cl_acc.item<double>();
  return sums;
}

torch::Tensor Pipeline::ForwardNll(const torch::Tensor& ids, const torch::Tensor& targets, int task) {
  torch::NoGradGuard ng;
  ForwardContext ctx;
  ctx.task = task;
  const auto dev = stage_.device();
  const int r = grid_.pp_rank();
  torch::Tensor h;
  if (grid_.first_stage()) {
    h = stage_.Embed(ids.to(dev));
  } else {
    h = torch::empty({ids.size(0), ids.size(1), stage_.config().hidden_size},
                     torch::TensorOptions().dtype(stage_.dtype()).device(stage_.device()));
    grid_.pp().Recv(h, r - 1, 0);
  }
  h = stage_.Layers(h, ctx);
  if (!grid_.last_stage()) {
    grid_.pp().Send(h.contiguous(), r + 1, 0);
    return {};
  }
  return stage_.TokenNll(h, targets.to(dev));
}

}  // namespace more
