#include "more/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/ranges.h>

#include <ATen/ATen.h>

#include "more/core/error.h"
#include "more/dist/watchdog.h"

namespace more {
namespace {

constexpr int kIdTag = 32000;  // MPI tag of the ncclUniqueId of a directed pair (pipeline tags are 2i, 2i+1)

void Nccl(ncclResult_t r, const char* op) {
  if (r != ncclSuccess) throw Error(fmt::format("NCCL {} failed: {}", op, ncclGetErrorString(r)));
}
void Cuda(cudaError_t r, const char* op) {
  if (r != cudaSuccess) throw Error(fmt::format("CUDA {} failed: {}", op, cudaGetErrorString(r)));
}

ncclDataType_t NcclType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    case at::kBool: return ncclUint8;
    default: throw Error(fmt::format("NCCL backend: unsupported dtype {}", c10::toString(t.scalar_type())));
  }
}

void CheckContiguous(const at::Tensor& t, const char* op) {
  MORE_CHECK(t.is_contiguous(), "NCCL backend {}: tensor must be contiguous", op);
}

cudaEvent_t NewEvent() {
  cudaEvent_t ev;
  Cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event create");
  return ev;
}

// A send enqueued on a side stream. Wait() makes the caller's stream wait for it (no host
// block); the buffer stays alive until the send has completed.
class NcclPendingSend final : public PendingSend {
 public:
  NcclPendingSend(at::Tensor buf, cudaEvent_t done, CudaStreamFn stream_fn)
      : buf_(std::move(buf)), done_(done), stream_fn_(stream_fn) {}
  ~NcclPendingSend() override {
    if (done_) {
      cudaEventSynchronize(done_);  // the buffer is freed right after: the send must be over
      cudaEventDestroy(done_);
    }
  }
  void Wait() override {
    if (!done_) return;
    Cuda(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream_fn_()), done_, 0), "stream wait event");
  }

 private:
  at::Tensor buf_;
  cudaEvent_t done_ = nullptr;
  CudaStreamFn stream_fn_;
};

// The NCCL side of the watchdog (dist/watchdog.h). NCCL operations are only enqueued on the
// host; a stalled peer shows up as CUDA work that never completes while the host waits in a
// stream synchronisation or a copy. So each operation records a CUDA event after it, and a
// thread polls the events in flight and ncclCommGetAsyncError of every communicator: an
// operation older than the timeout, or an asynchronous NCCL error, makes it print the operation
// and its peer, abort the NCCL communicators (ncclCommAbort: the blocked NCCL kernels return),
// wait a grace period so the other ranks print their own report, and end the process with exit
// code 3; mpirun then ends every other rank.
class NcclWatch {
 public:
  NcclWatch(double timeout_s, int world_rank, std::string what_group) :
      timeout_s_(timeout_s), world_rank_(world_rank), group_(std::move(what_group)) {}
  ~NcclWatch() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& f : inflight_) cudaEventDestroy(f.done);
  }
  bool enabled() const { return timeout_s_ > 0; }
  void AddComm(ncclComm_t c) {
    std::lock_guard<std::mutex> lock(mutex_);
    comms_.push_back(c);
  }
  // After an operation was enqueued on `stream`; peer_world < 0 for a collective.
  void Track(const char* op, int peer_world, cudaStream_t stream) {
    if (!enabled()) return;
    cudaEvent_t ev = NewEvent();
    Cuda(cudaEventRecord(ev, stream), "event record");
    std::lock_guard<std::mutex> lock(mutex_);
    inflight_.push_back({ev, op, peer_world, std::chrono::steady_clock::now()});
    if (!thread_.joinable()) {
      int device = 0;
      cudaGetDevice(&device);
      thread_ = std::thread([this, device] { Loop(device); });
    }
  }

 private:
  struct InFlight {
    cudaEvent_t done;
    const char* op;
    int peer_world;
    std::chrono::steady_clock::time_point t0;
  };

  void Loop(int device) {
    cudaSetDevice(device);
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::string problem;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        // drop the completed operations (side streams may complete out of order)
        inflight_.erase(std::remove_if(inflight_.begin(), inflight_.end(),
                                       [](const InFlight& f) {
                                         if (cudaEventQuery(f.done) != cudaSuccess) return false;
                                         cudaEventDestroy(f.done);
                                         return true;
                                       }),
                        inflight_.end());
        for (ncclComm_t c : comms_) {
          ncclResult_t async = ncclSuccess;
          if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21400
              && async != ncclInProgress
#endif
          ) {
            problem = fmt::format("NCCL reported an asynchronous error in the {} group: {}", group_,
                                  ncclGetErrorString(async));
            break;
          }
        }
        const auto now = std::chrono::steady_clock::now();
        for (const auto& f : inflight_) {
          const double waited = std::chrono::duration<double>(now - f.t0).count();
          if (problem.empty() && waited > timeout_s_)
            problem = f.peer_world >= 0
                          ? fmt::format("NCCL {} with world rank {} in the {} group has not completed after {:.1f} s "
                                        "(parallel.timeout_s = {}): world rank {} stalled or dead?",
                                        f.op, f.peer_world, group_, waited, timeout_s_, f.peer_world)
                          : fmt::format("NCCL {} in the {} group has not completed after {:.1f} s (parallel.timeout_s "
                                        "= {}): a rank of that group stalled or dead?",
                                        f.op, group_, waited, timeout_s_);
        }
        if (problem.empty()) continue;
        std::fprintf(stderr, "[rank %d] watchdog: %s; aborting the NCCL communicators\n", world_rank_, problem.c_str());
        std::fflush(stderr);
        for (ncclComm_t c : comms_) ncclCommAbort(c);  // the blocked NCCL kernels return
        comms_.clear();
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(std::clamp(timeout_s_ / 2, 1.0, 10.0)));
      std::fprintf(stderr, "[rank %d] error: watchdog: %s (hint: the job ends so the scheduler can restart it from "
                   "the last checkpoint; raise parallel.timeout_s if the wait was legitimate)\n",
                   world_rank_, problem.c_str());
      std::fflush(stderr);
      std::_Exit(3);  // no MPI_Finalize: mpirun ends the other ranks
    }
  }

  double timeout_s_;
  int world_rank_;
  std::string group_;
  std::mutex mutex_;
  std::vector<ncclComm_t> comms_;
  std::vector<InFlight> inflight_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn, const Watchdog* watchdog, std::string name)
      : mpi_(group, false, watchdog, name), group_(group), stream_fn_(stream_fn) {
    rank_ = mpi_.rank();
    size_ = mpi_.size();
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    // the world rank of every member, for the watchdog's messages
    MPI_Group g, world;
    MPI_Comm_group(group, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    std::vector<int> mine(static_cast<size_t>(size_));
    for (int i = 0; i < size_; ++i) mine[static_cast<size_t>(i)] = i;
    members_.assign(static_cast<size_t>(size_), -1);
    MPI_Group_translate_ranks(g, size_, mine.data(), world, members_.data());
    MPI_Group_free(&g);
    MPI_Group_free(&world);
    watch_ = std::make_unique<NcclWatch>(watchdog ? watchdog->timeout_s() : 0.0, world_rank,
                                         fmt::format("{} (world ranks {})", name, fmt::join(members_, ", ")));
  }
  ~NcclCommunicator() override {
    watch_.reset();  // stops the watchdog thread before the communicators go
    for (auto& [key, pair] : p2p_) {
      if (pair.comm) ncclCommDestroy(pair.comm);
      if (pair.stream) cudaStreamDestroy(pair.stream);
    }
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void AllReduceSum(at::Tensor& t) const override { Reduce(t, ncclSum); }
  void AllReduceMax(at::Tensor& t) const override { Reduce(t, ncclMax); }
  void Broadcast(at::Tensor& t, int root) const override {
    if (!t.is_cuda()) return mpi_.Broadcast(t, root);
    if (size_ == 1) return;
    CheckContiguous(t, "broadcast");
    Nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), root, Comm(), Stream()), "broadcast");
    watch_->Track("broadcast", -1, Stream());
  }
  void AllGather(const at::Tensor& in, at::Tensor& out) const override {
    if (!in.is_cuda()) return mpi_.AllGather(in, out);
    CheckContiguous(in, "all_gather");
    CheckContiguous(out, "all_gather");
    MORE_CHECK(out.is_cuda(), "NCCL backend all_gather: input on CUDA but output on {}", out.device().str());
    MORE_CHECK(out.numel() == in.numel() * size_, "all_gather: output has {} elements, expected {}", out.numel(),
               in.numel() * size_);
    if (size_ == 1) {
      out.copy_(in.view_as(out));
      return;
    }
    Nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), NcclType(in), Comm(), Stream()), "all_gather");
    watch_->Track("all_gather", -1, Stream());
  }
  void Send(const at::Tensor& t, int dst, int tag) const override {
    if (!t.is_cuda()) return mpi_.Send(t, dst, tag);
    ISend(t, dst, tag)->Wait();
  }
  std::unique_ptr<PendingSend> ISend(const at::Tensor& t, int dst, int tag) const override {
    if (!t.is_cuda()) return mpi_.ISend(t, dst, tag);
    auto& pair = Pair(rank_, dst);
    auto buf = t.detach().contiguous().clone();  // snapshot, made on the compute stream
    cudaEvent_t ready = NewEvent();
    Cuda(cudaEventRecord(ready, Stream()), "event record");
    Cuda(cudaStreamWaitEvent(pair.stream, ready, 0), "stream wait event");
    cudaEventDestroy(ready);  // released once the wait has been satisfied
    Nccl(ncclSend(buf.data_ptr(), buf.numel(), NcclType(buf), /*peer=*/1, pair.comm, pair.stream), "send");
    watch_->Track("send", members_[static_cast<size_t>(dst)], pair.stream);
    cudaEvent_t done = NewEvent();
    Cuda(cudaEventRecord(done, pair.stream), "event record");
    return std::make_unique<NcclPendingSend>(std::move(buf), done, stream_fn_);
  }
  void Recv(at::Tensor& t, int src, int tag) const override {
    if (!t.is_cuda()) return mpi_.Recv(t, src, tag);
    CheckContiguous(t, "recv");
    auto& pair = Pair(src, rank_);
    Nccl(ncclRecv(t.data_ptr(), t.numel(), NcclType(t), /*peer=*/0, pair.comm, Stream()), "recv");
    watch_->Track("recv", members_[static_cast<size_t>(src)], Stream());
  }
  void Barrier() const override {
    if (comm_ || !p2p_.empty()) Cuda(cudaStreamSynchronize(Stream()), "stream synchronize");  // CUDA work issued
    mpi_.Barrier();
  }

 private:
  struct DirectedPair {
    ncclComm_t comm = nullptr;     // 2 ranks: the sender is rank 0, the receiver rank 1
    cudaStream_t stream = nullptr;  // sender side: the stream its sends run on
  };

  cudaStream_t Stream() const { return static_cast<cudaStream_t>(stream_fn_()); }

  // The group's collective communicator, made at the first CUDA collective: every rank of the
  // group reaches that same collective, so they all join (a run that never puts a CUDA tensor
  // through a group creates no NCCL state for it).
  ncclComm_t Comm() const {
    if (comm_) return comm_;
    ncclUniqueId id;
    if (rank_ == 0) Nccl(ncclGetUniqueId(&id), "get unique id");
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, group_);
    Nccl(ncclCommInitRank(&comm_, size_, id, rank_), "comm init");
    watch_->AddComm(comm_);
    return comm_;
  }

  // The communicator of transfers src -> dst (one of them is this rank), made at first use: the
  // sender creates the id and sends it over MPI; both join. Both ranks reach their first transfer
  // of this direction (the sender's first send, the receiver's first receive), so the blocking
  // init cannot wait on a rank that never comes.
  DirectedPair& Pair(int src, int dst) const {
    MORE_CHECK(src != dst && src >= 0 && dst >= 0 && src < size_ && dst < size_,
               "NCCL backend: point-to-point {} -> {} in a group of {}", src, dst, size_);
    auto key = std::make_pair(src, dst);
    auto it = p2p_.find(key);
    if (it != p2p_.end()) return it->second;
    DirectedPair pair;
    ncclUniqueId id;
    const bool sender = src == rank_;
    if (sender) {
      Nccl(ncclGetUniqueId(&id), "get unique id");
      MPI_Send(&id, sizeof(id), MPI_BYTE, dst, kIdTag, group_);
      Cuda(cudaStreamCreateWithFlags(&pair.stream, cudaStreamNonBlocking), "stream create");
    } else {
      MPI_Recv(&id, sizeof(id), MPI_BYTE, src, kIdTag, group_, MPI_STATUS_IGNORE);
    }
    Nccl(ncclCommInitRank(&pair.comm, 2, id, sender ? 0 : 1), "p2p comm init");
    watch_->AddComm(pair.comm);
    return p2p_.emplace(key, pair).first->second;
  }

  void Reduce(at::Tensor& t, ncclRedOp_t op) const {
    if (!t.is_cuda()) {
      if (op == ncclSum) mpi_.AllReduceSum(t);
      else mpi_.AllReduceMax(t);
      return;
    }
    if (size_ == 1) return;
    CheckContiguous(t, "all_reduce");
    Nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), op, Comm(), Stream()), "all_reduce");
    watch_->Track("all_reduce", -1, Stream());
  }

  MpiCommunicator mpi_;
  MPI_Comm group_;
  CudaStreamFn stream_fn_;
  mutable ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  mutable std::map<std::pair<int, int>, DirectedPair> p2p_;
  std::vector<int> members_;           // world rank of each rank of the group
  std::unique_ptr<NcclWatch> watch_;   // the watchdog of the CUDA side (off without a timeout)
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn, const Watchdog* watchdog,
                                                   std::string name) {
  return std::make_unique<NcclCommunicator>(group, stream_fn, watchdog, std::move(name));
}

}  // namespace more
