// The safetensors header: dtypes, tensor entries, and the parser that validates a whole file's
// layout from its bytes (no file system, no mmap: the fuzz target calls it on raw input).
//
// File layout: u64 little-endian N | N bytes of JSON header | data section.
// The rules are the reference implementation's (Hugging Face `safetensors`, Rust), so a file
// the reference refuses is refused here too; docs/formats.md lists each with its message:
//   * the file holds at least the 8-byte length; 0 < N <= 100,000,000; 8 + N <= file size;
//   * the header is UTF-8 JSON, an object; "__metadata__" maps strings to strings; every other
//     key is a tensor {"dtype", "shape": [n >= 0], "data_offsets": [b, e]};
// Stricter than the reference (which accepts these silently): a name appearing twice (it keeps
// the last), a tensor entry with a field besides those three (it ignores it), and dtypes this
// project does not read (F8_*, U16, U32, U64, ...).
// Then, as the reference:
//   * e - b == numel(shape) x dtype size, computed without overflow;
//   * sorted by (b, e), the tensors tile the data section exactly: the first begins at 0, each
//     begins where the previous ended, and the last ends at the end of the file (no gap, no
//     overlap, no trailing bytes: a header length off by one leaves one).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace more {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };
size_t DTypeSize(DType d);
std::string DTypeName(DType d);        // "F32", ...
DType ParseDType(const std::string& s, const std::string& context);  // throws with context

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
  int64_t numel() const;
};

// The format's limit on the header length N (the reference's MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N
  uint64_t data_start = 0;    // 8 + N: where the data section starts in the file
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses and validates the header of a file of `size` bytes whose first min(size, 8 + N) bytes
// are at `bytes` (the data section itself is not read). Throws more::Error
// "safetensors '<path>': <rule broken>" with a hint.
SafetensorsHeader ParseSafetensorsHeader(const uint8_t* bytes, uint64_t size, const std::string& path);

}  // namespace more
