#include "more/dist/communicator.h"

#include <cstdio>
#include <exception>
#include <functional>

#include "more/core/error.h"
#include "more/dist/watchdog.h"

namespace more {
namespace {

MPI_Datatype MpiType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kChar: return MPI_INT8_T;
    case at::kBool: return MPI_C_BOOL;
    default: throw Error(fmt::format("MPI backend: unsupported dtype {}", c10::toString(t.scalar_type())));
  }
}

void CheckCpu(const at::Tensor& t, const char* op) {
  MORE_CHECK(t.device().is_cpu(), "MPI backend {}: tensor must be on the CPU (use the NCCL backend for CUDA)", op);
  MORE_CHECK(t.is_contiguous(), "MPI backend {}: tensor must be contiguous", op);
}

void Mpi(int rc, const char* op) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(fmt::format("MPI {} failed: {}", op, std::string(msg, len)));
  }
}

bool NeedsUpcast(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned, const Watchdog* watchdog, std::string name)
    : comm_(comm), owned_(owned), watchdog_(watchdog), name_(std::move(name)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // the world rank of every member, for the watchdog's messages
  MPI_Group group, world;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> mine(static_cast<size_t>(size_));
  for (int i = 0; i < size_; ++i) mine[static_cast<size_t>(i)] = i;
  members_.assign(static_cast<size_t>(size_), -1);
  MPI_Group_translate_ranks(group, size_, mine.data(), world, members_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
}

bool MpiCommunicator::Watched() const { return watchdog_ && watchdog_->enabled(); }

void MpiCommunicator::Wait(MPI_Request* req, MPI_Status* status, const char* op, int peer) const {
  if (!watchdog_) {
    Mpi(MPI_Wait(req, status), op);
    return;
  }
  WaitInfo info;
  info.op = op;
  info.group = &name_;
  info.members = &members_;
  info.peer = peer;
  watchdog_->Wait(req, status, info);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::AllReduceSum(at::Tensor& t) const {
  if (size_ == 1) return;
  CheckCpu(t, "all_reduce");
  if (NeedsUpcast(t)) {
    auto f = t.to(at::kFloat);
    AllReduceSum(f);
    t.copy_(f);
    return;
  }
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MPI_SUM, comm_, &req),
        "all_reduce");
    Wait(&req, MPI_STATUS_IGNORE, "all_reduce", -1);
    return;
  }
  Mpi(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MPI_SUM, comm_),
      "all_reduce");
}

void MpiCommunicator::AllReduceMax(at::Tensor& t) const {
  if (size_ == 1) return;
  CheckCpu(t, "all_reduce_max");
  if (NeedsUpcast(t)) {
    auto f = t.to(at::kFloat);
    AllReduceMax(f);
    t.copy_(f);
    return;
  }
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MPI_MAX, comm_, &req),
        "all_reduce_max");
    Wait(&req, MPI_STATUS_IGNORE, "all_reduce_max", -1);
    return;
  }
  Mpi(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MPI_MAX, comm_),
      "all_reduce_max");
}

void MpiCommunicator::Broadcast(at::Tensor& t, int root) const {
  if (size_ == 1) return;
  CheckCpu(t, "broadcast");
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Ibcast(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, root, comm_, &req), "broadcast");
    Wait(&req, MPI_STATUS_IGNORE, "broadcast", -1);
    return;
  }
  Mpi(MPI_Bcast(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, root, comm_), "broadcast");
}

void MpiCommunicator::AllGather(const at::Tensor& in, at::Tensor& out) const {
  CheckCpu(in, "all_gather");
  CheckCpu(out, "all_gather");
  MORE_CHECK(out.nbytes() == in.nbytes() * static_cast<size_t>(size_), "all_gather: output has {} bytes, expected {}",
             out.nbytes(), in.nbytes() * size_);
  if (size_ == 1) {
    out.copy_(in.view_as(out));
    return;
  }
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Iallgather(in.data_ptr(), static_cast<int>(in.nbytes()), MPI_BYTE, out.data_ptr(),
                       static_cast<int>(in.nbytes()), MPI_BYTE, comm_, &req),
        "all_gather");
    Wait(&req, MPI_STATUS_IGNORE, "all_gather", -1);
    return;
  }
  Mpi(MPI_Allgather(in.data_ptr(), static_cast<int>(in.nbytes()), MPI_BYTE, out.data_ptr(),
                    static_cast<int>(in.nbytes()), MPI_BYTE, comm_),
      "all_gather");
}

void MpiCommunicator::Send(const at::Tensor& t, int dst, int tag) const {
  CheckCpu(t, "send");
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Isend(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, dst, tag, comm_, &req), "send");
    Wait(&req, MPI_STATUS_IGNORE, "send", dst);
    return;
  }
  Mpi(MPI_Send(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, dst, tag, comm_), "send");
}

namespace {
class MpiPendingSend final : public PendingSend {
 public:
  using WaitFn = std::function<void(MPI_Request*)>;
  MpiPendingSend(at::Tensor buf, MPI_Request req, WaitFn wait) : buf_(std::move(buf)), req_(req), wait_(std::move(wait)) {}
  ~MpiPendingSend() override {
    if (req_ == MPI_REQUEST_NULL) return;
    if (std::uncaught_exceptions() > 0) {
      // unwinding towards MPI_Abort (e.g. the watchdog fired in a receive): waiting here could
      // block forever on a stalled peer. Let the send go on its own and keep its buffer alive.
      MPI_Request_free(&req_);
      static_cast<void>(new at::Tensor(std::move(buf_)));  // leaked on purpose: MPI may still read it
      return;
    }
    try {
      wait_(&req_);
    } catch (const std::exception& e) {  // a destructor cannot throw: end the job as RunMain would
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      std::fprintf(stderr, "[rank %d] error: %s\n", rank, e.what());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  void Wait() override {
    if (req_ != MPI_REQUEST_NULL) wait_(&req_);
  }

 private:
  at::Tensor buf_;  // kept alive until the send completes
  MPI_Request req_;
  WaitFn wait_;
};
}  // namespace

std::unique_ptr<PendingSend> MpiCommunicator::ISend(const at::Tensor& t, int dst, int tag) const {
  CheckCpu(t, "isend");
  auto buf = t.detach().clone();
  MPI_Request req;
  Mpi(MPI_Isend(buf.data_ptr(), static_cast<int>(buf.nbytes()), MPI_BYTE, dst, tag, comm_, &req), "isend");
  return std::make_unique<MpiPendingSend>(std::move(buf), req,
                                          [this, dst](MPI_Request* r) { Wait(r, MPI_STATUS_IGNORE, "isend", dst); });
}

void MpiCommunicator::Recv(at::Tensor& t, int src, int tag) const {
  CheckCpu(t, "recv");
  MPI_Status st;
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Irecv(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, src, tag, comm_, &req), "recv");
    Wait(&req, &st, "recv", src);
  } else {
    Mpi(MPI_Recv(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, src, tag, comm_, &st), "recv");
  }
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  MORE_CHECK(static_cast<size_t>(count) == t.nbytes(), "recv from {}: got {} bytes, expected {}", src, count,
             t.nbytes());
}

void MpiCommunicator::Barrier() const {
  if (size_ <= 1) return;
  if (Watched()) {
    MPI_Request req;
    Mpi(MPI_Ibarrier(comm_, &req), "barrier");
    Wait(&req, MPI_STATUS_IGNORE, "barrier", -1);
    return;
  }
  Mpi(MPI_Barrier(comm_), "barrier");
}

}  // namespace more
