// ProcessGrid: the rank layout world = tp x pp x dp and one communicator per axis.
//
//   world_rank = tp_rank + tp * (pp_rank + pp * dp_rank)     (tp fastest: a TP group is
//                                                              neighbouring ranks, one node)
// Groups of a rank:
//   tp group    : same (pp_rank, dp_rank)     - tensor-parallel collectives
//   pp group    : same (tp_rank, dp_rank)     - pipeline send/recv; pp rank i = stage i
//   dp group    : same (tp_rank, pp_rank)     - data-parallel replicas
//   stage group : same pp_rank (tp x dp)      - adapter gradient all-reduce of one stage
// Constructed once in main() and passed by const reference; no globals.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "more/dist/communicator.h"
#include "more/dist/watchdog.h"

namespace more {

struct Config;
struct LlamaConfig;

// Communication backend of every group: MPI (CPU tensors) or NCCL (CUDA tensors over NCCL,
// CPU tensors still over MPI; see nccl_communicator.h). NCCL needs this rank's CUDA device set
// before the grid is built (SelectDevice in dist/device.h).
enum class CommBackend { kMpi, kNccl };

struct Layout {
  int tp = 1, pp = 1, dp = 1;
  int world() const { return tp * pp * dp; }
};

class ProcessGrid {
 public:
  // Splits `world` (not owned) into the axis groups. Throws more::Error when tp*pp*dp does not
  // equal the world size, or when NCCL is asked of a build without it.
  // timeout_s > 0: every wait of every group is bounded by the watchdog (dist/watchdog.h).
  ProcessGrid(MPI_Comm world, Layout layout, CommBackend backend = CommBackend::kMpi, double timeout_s = 0);
  ~ProcessGrid();
  ProcessGrid(const ProcessGrid&) = delete;
  ProcessGrid& operator=(const ProcessGrid&) = delete;
  // A single-process grid (tests, tools): all groups of size 1, no MPI needed.
  static std::unique_ptr<ProcessGrid> Single();

  const Layout& layout() const { return layout_; }
  int world_rank() const { return world_rank_; }
  int world_size() const { return layout_.world(); }
  int tp_rank() const { return tp_rank_; }
  int pp_rank() const { return pp_rank_; }
  int dp_rank() const { return dp_rank_; }
  bool first_stage() const { return pp_rank_ == 0; }
  bool last_stage() const { return pp_rank_ == layout_.pp - 1; }
  // Rank 0 of the world / of this rank's stage group (writes the stage's checkpoint part).
  bool is_world_root() const { return world_rank_ == 0; }
  bool is_stage_root() const { return tp_rank_ == 0 && dp_rank_ == 0; }
  static int RankOf(const Layout& l, int tp_rank, int pp_rank, int dp_rank) {
    return tp_rank + l.tp * (pp_rank + l.pp * dp_rank);
  }

  const Communicator& world() const { return *world_; }
  const Communicator& tp() const { return *tp_; }
  const Communicator& pp() const { return *pp_; }
  const Communicator& dp() const { return *dp_; }
  const Communicator& stage() const { return *stage_; }
  CommBackend backend() const { return backend_; }
  std::string Describe() const;

 private:
  ProcessGrid() = default;
  Layout layout_;
  CommBackend backend_ = CommBackend::kMpi;
  int world_rank_ = 0, tp_rank_ = 0, pp_rank_ = 0, dp_rank_ = 0;
  std::vector<MPI_Comm> split_;  // the axis groups' MPI communicators, freed after the Communicators
  std::unique_ptr<Watchdog> watchdog_;  // outlives the Communicators (declared before them)
  std::unique_ptr<Communicator> world_, tp_, pp_, dp_, stage_;
};

// The grid of a training run: checks the layout against the model and the job's size
// (cfg.ValidateAgainstModel), selects this rank's device (model.device; SelectDevice) and builds
// the grid on the matching backend: NCCL for cuda, MPI for cpu, with the watchdog timeout
// parallel.timeout_s. One place for more_train and
// more_bench.
std::unique_ptr<ProcessGrid> MakeRunGrid(const Config& cfg, const LlamaConfig& model, MPI_Comm world);

}  // namespace more
