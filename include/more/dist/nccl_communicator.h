// NCCL backend of Communicator (CUDA tensors). Built only when a CUDA LibTorch is found
// (MORE_WITH_NCCL); CI builds compile-check it against /usr/local/cuda without linking.
//
// Set-up: rank 0 of the MPI group creates an ncclUniqueId, broadcasts it over that MPI
// communicator, and every rank calls ncclCommInitRank: one NCCL communicator per process
// group (tp, pp, dp, stage). Collectives and point-to-point operations are enqueued on the
// stream returned by `stream_fn` (the caller passes the current CUDA stream of LibTorch, so
// NCCL work is ordered with the compute that produced the tensor); ISend records a CUDA event
// that PendingSend::Wait synchronises on.
#pragma once
#include <memory>

#include "more/dist/communicator.h"

namespace more {

using CudaStreamFn = void* (*)();  // returns a cudaStream_t

std::unique_ptr<Communicator> MakeNcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn);

#ifdef MORE_WITH_NCCL
// LibTorch's current CUDA stream (src/dist/cuda_stream_cuda.cpp, CUDA builds only).
void* CurrentCudaStream();
#endif

}  // namespace more
