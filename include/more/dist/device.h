// This rank's compute device. Torch-free header (the trainer builds the torch::Device).
#pragma once
#include <string>
#include <vector>

#include <mpi.h>

namespace more {

// Rank of this process among the ranks of `world` on the same node, and their number
// (MPI_COMM_TYPE_SHARED; works under mpirun and srun alike).
struct LocalRank {
  int rank = 0, size = 1;
};
LocalRank NodeLocalRank(MPI_Comm world);

// This process's host name (gethostname).
std::string HostName();

// Every rank's host name, in world rank order (collective over `world`; one entry without MPI).
std::vector<std::string> RankHosts(MPI_Comm world);

// Start-up line per rank, logged by rank 0 (collective over `world`):
//   "rank 2: host node2, node-local rank 0 of 2"
// The node-local rank is what picks the GPU (SelectDevice); the cluster tests read these lines.
void LogPlacement(MPI_Comm world);

// "cpu": returns -1. "cuda": GPU index = node-local rank, made the current CUDA device (before
// any NCCL communicator or CUDA tensor is created); throws more::Error, naming the problem, when
// this LibTorch has no CUDA, no GPU is visible, or the node has more ranks than GPUs.
int SelectDevice(const std::string& device, MPI_Comm world);

}  // namespace more
