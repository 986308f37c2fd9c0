// NCCL backend of Communicator. Built into the library only when a CUDA LibTorch is found
// (MORE_WITH_NCCL); CPU-only builds compile-check it against /usr/local/cuda (no link).
//
// One NcclCommunicator per process group (tp, pp, dp, stage, world). It is a hybrid:
//   - CUDA tensors go over NCCL, enqueued on LibTorch's current CUDA stream (`stream_fn`), so
//     communication is ordered with the compute that produced and consumes the tensor;
//   - CPU tensors (token counts, loss sums, flags, checkpoint metadata) go over MPI on the same
//     group, so host-side scalars need no device round trip.
//
// Collectives: one NCCL communicator over the group, made at the group's first CUDA collective
// (which every rank of the group reaches): rank 0 creates the ncclUniqueId and broadcasts it
// over MPI, every rank calls ncclCommInitRank.
//
// Point to point (pipeline activations and their gradients): one 2-rank NCCL communicator per
// DIRECTED pair (src -> dst), created at the pair's first transfer (the id travels over MPI).
// A send is enqueued on a side stream of its own (after an event on the compute stream), a
// receive on the compute stream. So a send never blocks the compute stream, and each directed
// communicator is used by exactly one stream on each side. This gives the MPI backend's
// semantics (sends never block, receives in order) with which 1F1B's crossing transfers cannot
// deadlock. NCCL has no tags: transfers match in issue order per direction, which the pipeline
// respects (activations and gradients each flow in micro-batch order); tags are checked by the
// MPI backend only, so CI's MPI runs would catch an order change.
#pragma once
#include <memory>

#include "more/dist/communicator.h"

namespace more {

using CudaStreamFn = void* (*)();  // returns the cudaStream_t to enqueue on

// `group` is not owned (the ProcessGrid frees it after the communicator).
// With a watchdog whose timeout is > 0, a thread polls the CUDA events of the NCCL operations in
// flight and ncclCommGetAsyncError; an operation older than the timeout (or an asynchronous NCCL
// error) makes it print the operation and its peer on this rank, abort the NCCL communicators
// (ncclCommAbort) and end the process non-zero, so mpirun ends the job. CPU tensors go through
// the MPI backend with the same watchdog.
std::unique_ptr<Communicator> MakeNcclCommunicator(MPI_Comm group, CudaStreamFn stream_fn,
                                                   const Watchdog* watchdog = nullptr, std::string name = "world");

#ifdef MORE_WITH_NCCL
// LibTorch's current CUDA stream (src/dist/cuda_stream_cuda.cpp, CUDA builds only).
void* CurrentCudaStream();
#endif

}  // namespace more
