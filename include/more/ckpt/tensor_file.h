// torch <-> safetensors for named tensor maps (checkpoints, exports). Saving records a CRC-32
// of every tensor's bytes in the metadata ("crc32.<name>"); loading verifies them, so a flipped
// or truncated byte is reported with the tensor's name.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace more {

// Returns bytes written. Tensors are saved contiguous on the CPU in their own dtype.
uint64_t SaveTensorFile(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});
std::map<std::string, torch::Tensor> LoadTensorFile(const std::string& path, bool verify_crc = true,
                                                    std::map<std::string, std::string>* metadata = nullptr);

}  // namespace more
