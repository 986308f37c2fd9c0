// Watchdog: a bound on every wait of the MPI backend, so a rank that stalls (SIGSTOP, a hung
// node, a livelocked peer) ends the job instead of holding every other rank forever.
//
// With a timeout T > 0, MpiCommunicator issues each collective and point-to-point transfer as
// its non-blocking form and waits for it here. A wait longer than T:
//   1. prints at once, on every rank that times out:
//        [rank R] watchdog: <op> in the <group> group (world ranks ...) [with world rank P]
//        has not completed after T s
//   2. sends a notice ("rank R waits in <op> ...") to every other rank over the watchdog's own
//      communicator (a duplicate of the world), and collects the notices of the others for a
//      grace period G = clamp(T/2, 1 s, 10 s). A rank that is stuck too answers with what it
//      waits for; a rank that sends nothing is the suspect (stopped, hung or dead):
//        [rank R] watchdog: world ranks 0, 2 are waiting too (...); no word from world rank(s) 1:
//        stalled or dead
//   3. waits one more G (so every stuck rank prints its report before the job ends), then
//      throws more::Error; RunMain turns it into MPI_Abort, so every rank (the stopped one too)
//      exits non-zero and the scheduler can restart the job from the last checkpoint.
// T = 0 (parallel.timeout_s=0) keeps the plain blocking MPI calls.
//
// Only the thread that calls MPI (MPI_THREAD_FUNNELED) uses it. The NCCL backend bounds its
// CUDA work separately (nccl_communicator.cpp: events polled by a thread, ncclCommAbort).
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

namespace more {

// What a wait is for (formatted only when it times out).
struct WaitInfo {
  const char* op = "";                       // "all_reduce", "recv", ...
  const std::string* group = nullptr;        // "tp", "pp", "world", ...
  const std::vector<int>* members = nullptr;  // the group's world ranks, in group order
  int peer = -1;                              // group rank of the p2p peer, -1 for a collective
};

class Watchdog {
 public:
  // Collective over `world` (duplicates it for the notices). timeout_s <= 0: off.
  Watchdog(MPI_Comm world, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  double timeout_s() const { return timeout_s_; }
  bool enabled() const { return timeout_s_ > 0; }
  int world_rank() const { return world_rank_; }

  // Waits for `req` (status may be MPI_STATUS_IGNORE). On a timeout: reports as above and throws
  // more::Error naming the operation, the group and the ranks that did not answer.
  void Wait(MPI_Request* req, MPI_Status* status, const WaitInfo& info) const;

  // "all_reduce in the tp group (world ranks 0, 1)" / "recv from world rank 3 in the pp group ..."
  static std::string Describe(const WaitInfo& info);

 private:
  [[noreturn]] void Expire(const WaitInfo& info, double waited_s) const;

  MPI_Comm comm_ = MPI_COMM_NULL;  // duplicate of the world: notices only
  double timeout_s_ = 0;
  int world_rank_ = 0, world_size_ = 1;
};

}  // namespace more
