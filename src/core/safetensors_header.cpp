// Safetensors header parsing and validation (the rules: include/more/core/safetensors_header.h
// and docs/formats.md).
#include "more/core/safetensors_header.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "more/core/error.h"

namespace more {

namespace {

[[noreturn]] void FailFile(const std::string& path, const std::string& what, const std::string& hint) {
  throw Error(fmt::format("safetensors '{}': {}", path, what), hint);
}

// numel of a shape, or -1 on int64 overflow.
int64_t CheckedNumel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return -1;
  return n;
}

constexpr const char* kCorrupt = "the header is corrupt";

// One tensor entry {"dtype", "shape", "data_offsets"} -> TensorInfo (sizes checked).
TensorInfo ParseEntry(const std::string& path, const std::string& name, const nlohmann::json& v) {
  if (!v.is_object()) FailFile(path, fmt::format("entry for tensor '{}' is not an object", name), kCorrupt);
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      FailFile(path, fmt::format("tensor '{}' has an unknown field \"{}\"", name, it.key()),
               "a tensor entry holds only dtype, shape and data_offsets; a field this reader does not "
               "know could change how the bytes are meant to be read");
  if (!v.contains("dtype") || !v["dtype"].is_string())
    FailFile(path, fmt::format("tensor '{}' has no string \"dtype\"", name), kCorrupt);
  if (!v.contains("shape") || !v["shape"].is_array())
    FailFile(path, fmt::format("tensor '{}' has no \"shape\" array", name), kCorrupt);
  if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
    FailFile(path, fmt::format("tensor '{}' has no \"data_offsets\" [begin, end]", name), kCorrupt);
  TensorInfo info;
  info.name = name;
  info.dtype = ParseDType(v["dtype"].get<std::string>(), fmt::format("safetensors '{}': tensor '{}'", path, name));
  for (const auto& d : v["shape"]) {
    if (!d.is_number_integer() || (d.is_number_unsigned() ? d.get<uint64_t>() > INT64_MAX : d.get<int64_t>() < 0))
      FailFile(path, fmt::format("tensor '{}' has a shape entry {} that is not a non-negative integer", name, d.dump()),
               kCorrupt);
    info.shape.push_back(d.get<int64_t>());
  }
  for (int k = 0; k < 2; ++k)
    if (!v["data_offsets"][k].is_number_unsigned())
      FailFile(path, fmt::format("tensor '{}' has a data offset {} that is not a non-negative integer", name,
                                 v["data_offsets"][k].dump()),
               kCorrupt);
  info.begin = v["data_offsets"][0].get<uint64_t>();
  info.end = v["data_offsets"][1].get<uint64_t>();
  if (info.end < info.begin)
    FailFile(path, fmt::format("tensor '{}' has data_offsets [{}, {}] with end before begin", name, info.begin, info.end),
             kCorrupt);
  const int64_t numel = CheckedNumel(info.shape);
  uint64_t expected = 0;
  if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(info.dtype), &expected))
    FailFile(path, fmt::format("tensor '{}' shape [{}] overflows", name, fmt::join(info.shape, ", ")), kCorrupt);
  if (info.end - info.begin != expected)
    FailFile(path,
             fmt::format("tensor '{}' is mislabelled: dtype {} x shape [{}] needs {} bytes but data_offsets "
                         "[{}, {}] span {} bytes",
                         name, DTypeName(info.dtype), fmt::join(info.shape, ", "), expected, info.begin, info.end,
                         info.end - info.begin),
             "the header's dtype/shape do not match its offsets: the file was written wrongly or edited");
  return info;
}

// The tiling rule: sorted by (begin, end), the tensors cover [0, data_size) exactly.
void CheckTiling(const std::string& path, const std::map<std::string, TensorInfo>& tensors, uint64_t size,
                 uint64_t data_size) {
  // Truncation first: name the tensor reaching furthest and how much is missing.
  const TensorInfo* last = nullptr;
  for (const auto& [name, info] : tensors)
    if (!last || info.end > last->end) last = &info;
  if (last && last->end > data_size)
    FailFile(path,
             fmt::format("truncated: tensor '{}' ends at byte {} of the data section but only {} bytes are "
                         "present ({} bytes missing; the file is {} bytes, expected {})",
                         last->name, last->end, data_size, last->end - data_size, size,
                         size + (last->end - data_size)),
             "the download or copy was cut short: fetch the file again");

  std::vector<const TensorInfo*> order;
  for (const auto& [name, info] : tensors) order.push_back(&info);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end != b->end ? a->end < b->end : a->name < b->name;
  });
  uint64_t at = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* t : order) {
    if (t->begin < at)
      FailFile(path,
               fmt::format("tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", prev->name, prev->begin, prev->end,
                           t->name, t->begin, t->end),
               kCorrupt);
    if (t->begin > at)
      FailFile(path,
               fmt::format("data section not fully covered: bytes [{}, {}) before tensor '{}' belong to no tensor "
                           "(the tensors' data_offsets must tile the data section with no gap)",
                           at, t->begin, t->name),
               "the header does not describe the data: the file is corrupt or its header length is wrong");
    at = t->end;
    prev = t;
  }
  if (at != data_size)
    FailFile(path,
             fmt::format("data section not fully covered: the tensors end at byte {} of the data section but it "
                         "holds {} bytes ({} bytes after the last tensor{}; the header length field says {} bytes)",
                         at, data_size, data_size - at, prev ? fmt::format(" '{}'", prev->name) : std::string(),
                         size - 8 - data_size),
             "the header length field or the file size is wrong (the file is corrupt): every tensor would be "
             "read from the wrong bytes; fetch the file again");
}

}  // namespace

// ---- dtypes ----------------------------------------------------------------------------

size_t DTypeSize(DType d) {
  switch (d) {
    case DType::kF64:
    case DType::kI64: return 8;
    case DType::kF32:
    case DType::kI32: return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16: return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool: return 1;
  }
  throw Error(fmt::format("unknown DType code {}", static_cast<int>(d)));
}

std::string DTypeName(DType d) {
  switch (d) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  throw Error(fmt::format("unknown DType code {}", static_cast<int>(d)));
}

DType ParseDType(const std::string& s, const std::string& context) {
  static const std::pair<const char*, DType> kAll[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"F64", DType::kF64},
      {"I64", DType::kI64}, {"I32", DType::kI32}, {"I16", DType::kI16},   {"I8", DType::kI8},
      {"U8", DType::kU8},   {"BOOL", DType::kBool}};
  for (const auto& [name, d] : kAll)
    if (s == name) return d;
  throw Error(fmt::format("{}: unknown safetensors dtype '{}'", context, s),
              "supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL (F8 and unsigned >8-bit types "
              "are not)");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- the header ------------------------------------------------------------------------

SafetensorsHeader ParseSafetensorsHeader(const uint8_t* bytes, uint64_t size, const std::string& path) {
  if (size < 8)
    FailFile(path, fmt::format("file is only {} bytes; a safetensors file starts with an 8-byte header length", size),
             "the file is empty or truncated: download or copy it again");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
  if (n == 0) FailFile(path, "header length is 0", "not a safetensors file (or it is corrupt)");
  if (n > kSafetensorsMaxHeaderBytes)
    FailFile(path,
             fmt::format("header length {} bytes is implausibly large (the format's limit is {})", n,
                         kSafetensorsMaxHeaderBytes),
             "not a safetensors file (or it is corrupt)");
  if (n > size - 8)
    FailFile(path,
             fmt::format("header length {} bytes is larger than the file allows ({} bytes after the "
                         "8-byte length field)",
                         n, size - 8),
             "the file is truncated or not a safetensors file: download or copy it again");
  SafetensorsHeader h;
  h.header_bytes = n;
  h.data_start = 8 + n;
  const uint8_t* text = bytes + 8;

  // Duplicate tensor names: JSON allows them, the parser would keep the last silently.
  std::set<std::string> seen;
  std::string duplicate;
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty() &&
        !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + n, on_event);
  } catch (const nlohmann::json::exception& e) {
    FailFile(path, fmt::format("header ({} bytes) is not valid JSON: {}", n, e.what()),
             "the file is corrupt or not a safetensors file");
  }
  if (!header.is_object()) FailFile(path, "header is JSON but not an object", "the file is corrupt or not a safetensors file");
  if (!duplicate.empty())
    FailFile(path, fmt::format("the header names '{}' twice", duplicate),
             "each tensor (and __metadata__) appears once; the file is corrupt or was edited");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) FailFile(path, "\"__metadata__\" is not an object", kCorrupt);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          FailFile(path, fmt::format("\"__metadata__\" value for '{}' is not a string", m.key()),
                   "safetensors metadata maps strings to strings");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.tensors.emplace(name, ParseEntry(path, name, v));
  }
  CheckTiling(path, h.tensors, size, size - h.data_start);
  return h;
}

}  // namespace more
