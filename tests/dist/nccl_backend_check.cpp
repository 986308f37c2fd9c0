// Under mpirun -np 2: the NCCL backend (nccl_communicator.cpp) linked against the CUDA toolkit's
// libnccl and libcudart.
//   - CPU tensors go over MPI inside the NCCL communicator: checked on every machine, GPU or not
//     (so CI proves the backend links, constructs without touching CUDA, and dispatches right);
//   - CUDA tensors go over NCCL: checked when a GPU per rank is visible (a CUDA LibTorch build on
//     a GPU machine), including 1F1B-style crossing sends larger than NCCL's buffers, which
//     deadlock unless sends run off the compute stream.
// Exit status 0 = all checks passed; prints each failure.
#include <cstdio>

#include <mpi.h>
#include <torch/torch.h>

#include "more/dist/device.h"
#include "more/dist/nccl_communicator.h"

namespace {

int failures = 0;
void Check(bool ok, const char* what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAIL %s\n", rank, what);
    ++failures;
  }
}

void* DefaultStream() { return nullptr; }  // the legacy default stream (CPU-only checks never use it)

void RunChecks(const more::Communicator& c, const torch::TensorOptions& o) {
  const int r = c.rank(), n = c.size();
  const std::string dev = o.device().str();
  auto sum = torch::full({1000}, static_cast<double>(r + 1), o.dtype(torch::kFloat32));
  c.AllReduceSum(sum);
  Check(sum.cpu().eq(n * (n + 1) / 2.0).all().item<bool>(), ("all_reduce sum on " + dev).c_str(), r);
  auto bf = torch::full({64}, static_cast<double>(r + 1), o.dtype(torch::kBFloat16));
  c.AllReduceSum(bf);
  Check(bf.cpu().to(torch::kFloat32).eq(n * (n + 1) / 2.0).all().item<bool>(), ("bf16 all_reduce on " + dev).c_str(), r);
  auto mx = torch::tensor({static_cast<double>(r), -static_cast<double>(r)}, o.dtype(torch::kFloat64));
  c.AllReduceMax(mx);
  Check(mx.cpu()[0].item<double>() == n - 1 && mx.cpu()[1].item<double>() == 0, ("all_reduce max on " + dev).c_str(), r);
  auto b = r == 1 ? torch::arange(10, o.dtype(torch::kInt64)) : torch::zeros({10}, o.dtype(torch::kInt64));
  c.Broadcast(b, 1);
  Check(b.cpu().equal(torch::arange(10, torch::kInt64)), ("broadcast on " + dev).c_str(), r);
  auto in = torch::full({3}, static_cast<double>(r), o.dtype(torch::kFloat32));
  auto out = torch::empty({3 * n}, o.dtype(torch::kFloat32));
  c.AllGather(in, out);
  Check(out.cpu().equal(torch::arange(n, torch::kFloat32).repeat_interleave(3)), ("all_gather on " + dev).c_str(), r);
  // crossing transfers, as 1F1B's steady state: both ranks send first, then receive. 16M floats
  // (64 MB) is far beyond what NCCL buffers, so a send that blocked the stream would deadlock.
  const int64_t big = o.device().is_cuda() ? (int64_t{1} << 24) : 4096;
  const int peer = 1 - r;
  std::vector<std::unique_ptr<more::PendingSend>> sends;
  for (int i = 0; i < 3; ++i)
    sends.push_back(c.ISend(torch::full({big}, static_cast<double>(10 * r + i), o.dtype(torch::kFloat32)), peer, i));
  for (int i = 0; i < 3; ++i) {
    auto got = torch::empty({big}, o.dtype(torch::kFloat32));
    c.Recv(got, peer, i);
    Check(got.cpu().eq(static_cast<double>(10 * peer + i)).all().item<bool>(), ("crossing send/recv on " + dev).c_str(), r);
  }
  for (auto& s : sends) s->Wait();
  c.Barrier();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    std::fprintf(stderr, "run with mpirun -np 2\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  try {
    MPI_Comm group;
    MPI_Comm_dup(MPI_COMM_WORLD, &group);
    {
      auto cpu = more::MakeNcclCommunicator(group, &DefaultStream);
      Check(cpu->backend() == "nccl" && cpu->rank() == rank && cpu->size() == 2, "rank/size/backend", rank);
      RunChecks(*cpu, torch::TensorOptions());
    }
#ifdef MORE_WITH_NCCL
    if (torch::cuda::device_count() >= 2) {  // one GPU per rank (NCCL refuses two ranks on one GPU)
      more::SelectDevice("cuda", MPI_COMM_WORLD);
      auto gpu = more::MakeNcclCommunicator(group, &more::CurrentCudaStream);
      RunChecks(*gpu, torch::TensorOptions().device(torch::kCUDA));
      std::printf("rank %d: CUDA checks done\n", rank);
    } else if (rank == 0) {
      std::printf("fewer than 2 GPUs visible: CUDA tensor checks skipped\n");
    }
#else
    if (rank == 0) std::printf("CPU LibTorch: CUDA tensor checks need a CUDA build (docs/gpu.md)\n");
#endif
    MPI_Comm_free(&group);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("%s (%d failure(s))\n", total == 0 ? "PASS" : "FAIL", total);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
