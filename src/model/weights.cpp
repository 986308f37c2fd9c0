#include "more/model/weights.h"

#include "more/core/error.h"

namespace more {

torch::ScalarType TorchDType(DType d) {
  switch (d) {
    case DType::kF32: return torch::kFloat32;
    case DType::kF16: return torch::kFloat16;
    case DType::kBF16: return torch::kBFloat16;
    case DType::kF64: return torch::kFloat64;
    case DType::kI64: return torch::kInt64;
    case DType::kI32: return torch::kInt32;
    case DType::kI16: return torch::kInt16;
    case DType::kI8: return torch::kInt8;
    case DType::kU8: return torch::kUInt8;
    case DType::kBool: return torch::kBool;
  }
  throw Error("unknown safetensors dtype");
}

torch::Tensor LoadTensorSlice(const SafetensorsCollection& st, const std::string& name,
                              const std::vector<int64_t>& expected_shape, int split_dim, int part,
                              int parts, torch::ScalarType dtype, torch::Device device) {
  if (!st.Has(name))
    throw Error(fmt::format("weights: tensor '{}' not found", name),
                "is this a LLaMA checkpoint in the Hugging Face layout, matching config.json?");
  const auto& file = st.FileFor(name);
  const auto& info = file.Info(name);
  if (info.shape != expected_shape)
    throw Error(fmt::format("weights: tensor '{}' in '{}' has shape [{}] but config.json implies [{}]", name,
                            file.path(), fmt::join(info.shape, ", "), fmt::join(expected_shape, ", ")),
                "config.json does not match the weights");
  auto full = torch::from_blob(const_cast<void*>(file.Data(name)), info.shape,
                               torch::TensorOptions().dtype(TorchDType(info.dtype)));
  auto t = full;
  if (split_dim >= 0 && parts > 1) {
    const int64_t n = info.shape[split_dim];
    MORE_CHECK(n % parts == 0, "weights: '{}' dim {} = {} does not split in {}", name, split_dim, n, parts);
    t = full.narrow(split_dim, part * (n / parts), n / parts);
  }
  // .to() on a view of the map copies only the slice; clone when the dtype already matches
  auto out = t.to(torch::TensorOptions().dtype(dtype).device(device), /*non_blocking=*/false, /*copy=*/true);
  return out.contiguous();
}

}  // namespace more
