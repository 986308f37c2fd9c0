#include "more/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <ATen/ATen.h>

#include "more/core/error.h"

namespace more {
namespace {

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
    default: throw Error(fmt::format("NCCL backend: unsupported dtype {}", c10::toString(t.scalar_type())));
  }
}

void CheckCuda(const at::Tensor& t, const char* op) {
  MORE_CHECK(t.is_cuda(), "NCCL backend {}: tensor must be on a CUDA device", op);
  MORE_CHECK(t.is_contiguous(), "NCCL backend {}: tensor must be contiguous", op);
}

class NcclPendingSend final : public PendingSend {
 public:
  NcclPendingSend(at::Tensor buf, cudaEvent_t ev) : buf_(std::move(buf)), ev_(ev) {}
  ~NcclPendingSend() override {
    if (ev_) {
      cudaEventSynchronize(ev_);
      cudaEventDestroy(ev_);
    }
  }
  void Wait() override {
    if (ev_) Cuda(cudaEventSynchronize(ev_), "event synchronize");
  }

 private:
  at::Tensor buf_;
  cudaEvent_t ev_ = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn) : stream_fn_(stream_fn) {
    MPI_Comm_rank(group, &rank_);
    MPI_Comm_size(group, &size_);
    ncclUniqueId id;
    if (rank_ == 0) Nccl(ncclGetUniqueId(&id), "get unique id");
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, group);
    Nccl(ncclCommInitRank(&comm_, size_, id, rank_), "comm init");
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void AllReduceSum(at::Tensor& t) const override { Reduce(t, ncclSum); }
  void AllReduceMax(at::Tensor& t) const override { Reduce(t, ncclMax); }
  void Broadcast(at::Tensor& t, int root) const override {
    if (size_ == 1) return;
    CheckCuda(t, "broadcast");
    Nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), root, comm_, Stream()), "broadcast");
  }
  void AllGather(const at::Tensor& in, at::Tensor& out) const override {
    CheckCuda(in, "all_gather");
    CheckCuda(out, "all_gather");
    MORE_CHECK(out.numel() == in.numel() * size_, "all_gather: output has {} elements, expected {}", out.numel(),
               in.numel() * size_);
    Nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), NcclType(in), comm_, Stream()), "all_gather");
  }
  void Send(const at::Tensor& t, int dst, int tag) const override {
    CheckCuda(t, "send");
    Nccl(ncclSend(t.data_ptr(), t.numel(), NcclType(t), dst, comm_, Stream()), "send");
  }
  std::unique_ptr<PendingSend> ISend(const at::Tensor& t, int dst, int tag) const override {
    auto buf = t.detach().clone();
    Send(buf, dst, tag);
    cudaEvent_t ev;
    Cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event create");
    Cuda(cudaEventRecord(ev, Stream()), "event record");
    return std::make_unique<NcclPendingSend>(std::move(buf), ev);
  }
  void Recv(at::Tensor& t, int src, int tag) const override {
    CheckCuda(t, "recv");
    Nccl(ncclRecv(t.data_ptr(), t.numel(), NcclType(t), src, comm_, Stream()), "recv");
  }
  void Barrier() const override {
    Cuda(cudaStreamSynchronize(Stream()), "stream synchronize");
  }

 private:
  cudaStream_t Stream() const { return static_cast<cudaStream_t>(stream_fn_()); }
  void Reduce(at::Tensor& t, ncclRedOp_t op) const {
    if (size_ == 1) return;
    CheckCuda(t, "all_reduce");
    Nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), op, comm_, Stream()), "all_reduce");
  }
  CudaStreamFn stream_fn_;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn) {
  return std::make_unique<NcclCommunicator>(group, stream_fn);
}

}  // namespace more
