#include "more/dist/process_grid.h"

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/dist/device.h"
#include "more/model/hf_config.h"
#include "more/dist/nccl_communicator.h"

namespace more {
namespace {

// A communicator of size 1 that never touches MPI (for ProcessGrid::Single()).
class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  void AllReduceSum(at::Tensor&) const override {}
  void AllReduceMax(at::Tensor&) const override {}
  void Broadcast(at::Tensor&, int) const override {}
  void AllGather(const at::Tensor& in, at::Tensor& out) const override { out.copy_(in.view_as(out)); }
  void Send(const at::Tensor&, int, int) const override { throw Error("send on a single-rank grid"); }
  std::unique_ptr<PendingSend> ISend(const at::Tensor&, int, int) const override {
    throw Error("send on a single-rank grid");
  }
  void Recv(at::Tensor&, int, int) const override { throw Error("recv on a single-rank grid"); }
  void Barrier() const override {}
};

std::unique_ptr<Communicator> MakeCommunicator(MPI_Comm c, CommBackend backend, const Watchdog* watchdog,
                                               const std::string& name) {
  if (backend == CommBackend::kNccl) {
#ifdef MORE_WITH_NCCL
    return MakeNcclCommunicator(c, &CurrentCudaStream, watchdog, name);
#else
    throw Error("model.device=cuda needs the NCCL backend, which this build does not have (CPU LibTorch)",
                "rebuild against a CUDA LibTorch: see docs/gpu.md");
#endif
  }
  return std::make_unique<MpiCommunicator>(c, false, watchdog, name);
}

}  // namespace

ProcessGrid::ProcessGrid(MPI_Comm world, Layout layout, CommBackend backend, double timeout_s)
    : layout_(layout), backend_(backend) {
  int size = 0;
  MPI_Comm_rank(world, &world_rank_);
  MPI_Comm_size(world, &size);
  if (layout.tp < 1 || layout.pp < 1 || layout.dp < 1 || layout.world() != size)
    throw Error(fmt::format("process grid: tp*pp*dp = {}*{}*{} = {} but the job has {} ranks", layout.tp,
                            layout.pp, layout.dp, layout.world(), size),
                "launch tp*pp*dp ranks (mpirun -np N) or set parallel.dp=0 to infer dp");
  tp_rank_ = world_rank_ % layout.tp;
  pp_rank_ = (world_rank_ / layout.tp) % layout.pp;
  dp_rank_ = world_rank_ / (layout.tp * layout.pp);
  watchdog_ = std::make_unique<Watchdog>(world, timeout_s);
  auto split = [&](int color, int key, const std::string& name) {
    MPI_Comm c;
    MPI_Comm_split(world, color, key, &c);
    split_.push_back(c);
    return MakeCommunicator(c, backend, watchdog_.get(), name);
  };
  world_ = MakeCommunicator(world, backend, watchdog_.get(), "world");
  tp_ = split(pp_rank_ + layout.pp * dp_rank_, tp_rank_, "tp");
  pp_ = split(tp_rank_ + layout.tp * dp_rank_, pp_rank_, "pp");
  dp_ = split(tp_rank_ + layout.tp * pp_rank_, dp_rank_, "dp");
  stage_ = split(pp_rank_, tp_rank_ + layout.tp * dp_rank_, "stage");
}

ProcessGrid::~ProcessGrid() {
  world_.reset();
  tp_.reset();
  pp_.reset();
  dp_.reset();
  stage_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized)
    for (auto& c : split_) MPI_Comm_free(&c);
}

std::unique_ptr<ProcessGrid> MakeRunGrid(const Config& cfg, const LlamaConfig& model, MPI_Comm world) {
  int size = 1;
  MPI_Comm_size(world, &size);
  cfg.ValidateAgainstModel(model, size);
  const Layout layout{static_cast<int>(cfg.parallel.tp), static_cast<int>(cfg.parallel.pp),
                      static_cast<int>(cfg.dp_size(size))};
  // GPU: this rank's device is made current first, so the NCCL communicators are created on it
  const int gpu = SelectDevice(cfg.model.device, world);
  return std::make_unique<ProcessGrid>(world, layout, gpu >= 0 ? CommBackend::kNccl : CommBackend::kMpi,
                                       cfg.parallel.timeout_s);
}

std::unique_ptr<ProcessGrid> ProcessGrid::Single() {
  std::unique_ptr<ProcessGrid> g(new ProcessGrid());
  g->world_ = std::make_unique<SelfCommunicator>();
  g->tp_ = std::make_unique<SelfCommunicator>();
  g->pp_ = std::make_unique<SelfCommunicator>();
  g->dp_ = std::make_unique<SelfCommunicator>();
  g->stage_ = std::make_unique<SelfCommunicator>();
  return g;
}

std::string ProcessGrid::Describe() const {
  return fmt::format("world {} = tp {} x pp {} x dp {} (rank = tp_rank + tp*(pp_rank + pp*dp_rank)), {} backend, {}",
                     world_size(), layout_.tp, layout_.pp, layout_.dp,
                     backend_ == CommBackend::kNccl ? "nccl (CPU tensors over MPI)" : "mpi",
                     watchdog_ && watchdog_->enabled() ? fmt::format("watchdog {} s", watchdog_->timeout_s())
                                                       : std::string("no watchdog"));
}

}  // namespace more
