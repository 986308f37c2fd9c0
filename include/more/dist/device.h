// This rank's compute device. Torch-free header (the trainer builds the torch::Device).
#pragma once
#include <string>

#include <mpi.h>

namespace more {

// Rank of this process among the ranks of `world` on the same node, and their number
// (MPI_COMM_TYPE_SHARED; works under mpirun and srun alike).
struct LocalRank {
  int rank = 0, size = 1;
};
LocalRank NodeLocalRank(MPI_Comm world);

// "cpu": returns -1. "cuda": GPU index = node-local rank, made the current CUDA device (before
// any NCCL communicator or CUDA tensor is created); throws more::Error, naming the problem, when
// this LibTorch has no CUDA, no GPU is visible, or the node has more ranks than GPUs.
int SelectDevice(const std::string& device, MPI_Comm world);

}  // namespace more
