#include "more/dist/device.h"

#include <unistd.h>

#include <array>

#include <spdlog/spdlog.h>

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

std::string HostName() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "?";
  return name.data();
}

std::vector<std::string> RankHosts(MPI_Comm world) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return {HostName()};
  int size = 1;
  MPI_Comm_size(world, &size);
  constexpr int kLen = 256;
  std::array<char, kLen> mine{};
  const auto host = HostName();
  host.copy(mine.data(), kLen - 1);
  std::vector<char> all(static_cast<size_t>(kLen) * size);
  MPI_Allgather(mine.data(), kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, world);
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.emplace_back(all.data() + static_cast<size_t>(r) * kLen);
  return out;
}

void LogPlacement(MPI_Comm world) {
  const auto hosts = RankHosts(world);
  const auto local = NodeLocalRank(world);
  int initialized = 0;
  MPI_Initialized(&initialized);
  std::vector<int> locals{local.rank, local.size};
  if (initialized) {
    int size = 1;
    MPI_Comm_size(world, &size);
    locals.resize(2 * static_cast<size_t>(size));
    const int mine[2] = {local.rank, local.size};
    MPI_Allgather(mine, 2, MPI_INT, locals.data(), 2, MPI_INT, world);
  }
  for (size_t r = 0; r < hosts.size(); ++r)
    spdlog::info("rank {}: host {}, node-local rank {} of {}", r, hosts[r], locals[2 * r], locals[2 * r + 1]);
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
