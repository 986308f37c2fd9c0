// Built only with a CUDA LibTorch (MORE_WITH_NCCL): the current LibTorch CUDA stream, handed to
// the NCCL backend so communication is ordered with the compute that produced its tensors.
#include <c10/cuda/CUDAStream.h>

#include "more/dist/nccl_communicator.h"

namespace more {

void* CurrentCudaStream() { return static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()); }

}  // namespace more
