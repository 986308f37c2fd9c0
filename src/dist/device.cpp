#include "more/dist/device.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include "more/core/error.h"

namespace more {

LocalRank NodeLocalRank(MPI_Comm world) {
  LocalRank lr;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return lr;  // a single process without MPI (unit tests, tools)
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &lr.rank);
  MPI_Comm_size(node, &lr.size);
  MPI_Comm_free(&node);
  return lr;
}

int SelectDevice(const std::string& device, MPI_Comm world) {
  if (device == "cpu") return -1;
  MORE_CHECK(device == "cuda", "model.device must be cpu or cuda, not '{}'", device);
  const auto local = NodeLocalRank(world);
  const int gpus = static_cast<int>(torch::cuda::device_count());
  if (gpus == 0)
    throw Error(torch::cuda::is_available() ? "model.device=cuda but no CUDA device is visible"
                                            : "model.device=cuda but this build's LibTorch has no CUDA support",
                "check CUDA_VISIBLE_DEVICES and nvidia-smi, or rebuild against a CUDA LibTorch (docs/gpu.md)");
  if (local.rank >= gpus)
    throw Error(fmt::format("node-local rank {} of {} has no GPU of its own: {} visible", local.rank, local.size, gpus),
                "launch one rank per GPU (mpirun --npernode <gpus>, srun --ntasks-per-node=<gpus>)");
  c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
      ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(local.rank)));
  return local.rank;
}

}  // namespace more
