#include "more/dist/communicator.h"

#include "more/core/error.h"

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

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
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
  Mpi(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MPI_MAX, comm_),
      "all_reduce_max");
}

void MpiCommunicator::Broadcast(at::Tensor& t, int root) const {
  if (size_ == 1) return;
  CheckCpu(t, "broadcast");
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
  Mpi(MPI_Allgather(in.data_ptr(), static_cast<int>(in.nbytes()), MPI_BYTE, out.data_ptr(),
                    static_cast<int>(in.nbytes()), MPI_BYTE, comm_),
      "all_gather");
}

void MpiCommunicator::Send(const at::Tensor& t, int dst, int tag) const {
  CheckCpu(t, "send");
  Mpi(MPI_Send(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, dst, tag, comm_), "send");
}

namespace {
class MpiPendingSend final : public PendingSend {
 public:
  MpiPendingSend(at::Tensor buf, MPI_Request req) : buf_(std::move(buf)), req_(req) {}
  ~MpiPendingSend() override {
    if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);
  }
  void Wait() override {
    if (req_ != MPI_REQUEST_NULL) Mpi(MPI_Wait(&req_, MPI_STATUS_IGNORE), "isend wait");
  }

 private:
  at::Tensor buf_;  // kept alive until the send completes
  MPI_Request req_;
};
}  // namespace

std::unique_ptr<PendingSend> MpiCommunicator::ISend(const at::Tensor& t, int dst, int tag) const {
  CheckCpu(t, "isend");
  auto buf = t.detach().clone();
  MPI_Request req;
  Mpi(MPI_Isend(buf.data_ptr(), static_cast<int>(buf.nbytes()), MPI_BYTE, dst, tag, comm_, &req), "isend");
  return std::make_unique<MpiPendingSend>(std::move(buf), req);
}

void MpiCommunicator::Recv(at::Tensor& t, int src, int tag) const {
  CheckCpu(t, "recv");
  MPI_Status st;
  Mpi(MPI_Recv(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, src, tag, comm_, &st), "recv");
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  MORE_CHECK(static_cast<size_t>(count) == t.nbytes(), "recv from {}: got {} bytes, expected {}", src, count,
             t.nbytes());
}

void MpiCommunicator::Barrier() const {
  if (size_ > 1) Mpi(MPI_Barrier(comm_), "barrier");
}

}  // namespace more
