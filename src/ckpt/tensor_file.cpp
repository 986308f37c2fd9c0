#include "more/ckpt/tensor_file.h"

#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/core/safetensors.h"
#include "more/model/weights.h"

namespace more {
namespace {

DType FromTorch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return DType::kF32;
    case torch::kFloat16: return DType::kF16;
    case torch::kBFloat16: return DType::kBF16;
    case torch::kFloat64: return DType::kF64;
    case torch::kInt64: return DType::kI64;
    case torch::kInt32: return DType::kI32;
    case torch::kUInt8: return DType::kU8;
    default: throw Error(fmt::format("cannot save dtype {} to safetensors", c10::toString(t)));
  }
}

}  // namespace

uint64_t SaveTensorFile(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.SetMetadata(k, v);
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    w.Add(name, FromTorch(c.scalar_type()), c.sizes().vec(), c.data_ptr(), c.nbytes());
    w.SetMetadata("crc32." + name, std::to_string(Crc32(c.data_ptr(), c.nbytes())));
  }
  return w.Write(path);
}

std::map<std::string, torch::Tensor> LoadTensorFile(const std::string& path, bool verify_crc,
                                                    std::map<std::string, std::string>* metadata) {
  SafetensorsFile f(path);
  std::map<std::string, torch::Tensor> out;
  const auto& meta = f.Metadata();
  for (const auto& name : f.Names()) {
    const auto& info = f.Info(name);
    if (verify_crc) {
      auto it = meta.find("crc32." + name);
      if (it == meta.end())
        throw Error(fmt::format("'{}': no checksum recorded for tensor '{}'", path, name),
                    "the file was not written by this trainer or its metadata was edited");
      const uint32_t crc = Crc32(f.Data(name), info.end - info.begin);
      if (std::to_string(crc) != it->second)
        throw Error(fmt::format("'{}': checksum mismatch for tensor '{}' (stored {}, computed {})", path, name,
                                it->second, crc),
                    "the file is corrupt; resume from an earlier checkpoint");
    }
    out[name] = torch::from_blob(const_cast<void*>(f.Data(name)), info.shape,
                                 torch::TensorOptions().dtype(TorchDType(info.dtype)))
                    .clone();
  }
  if (metadata) *metadata = meta;
  return out;
}

}  // namespace more
