// Safetensors reading (mmap + validation), sharded collections and atomic writing.
// The file format and every check below are described in docs/formats.md.
#include "more/core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "more/core/error.h"

namespace more {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // 100 MB: far above any real header
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string Errno(int e) { return std::strerror(e); }

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

// A list of byte ranges written back to back.
struct Chunk {
  const void* data;
  size_t size;
};

// The steps every atomic write shares: a file `path`.tmp is created, written, then published by
// fsync + close + rename + fsync(dir); on any failure the tmp file is removed, `path` is left as
// it was, and the error names the step and the bytes written.
int CreateTmp(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int e = errno;
    throw Error(fmt::format("cannot create '{}' (to write '{}'): {}", tmp, path, Errno(e)),
                "check that the directory exists and is writable");
  }
  return fd;
}

[[noreturn]] void AbandonTmp(int fd, const std::string& tmp, const std::string& path, const std::string& step, int e,
                             uint64_t done, uint64_t total) {
  ::close(fd);
  ::unlink(tmp.c_str());
  const std::string hint = (e == ENOSPC || e == EDQUOT)
                               ? "the disk (or quota) is full: free space or write somewhere else"
                               : "check the file system (space, permissions, I/O errors)";
  throw Error(fmt::format("writing '{}' failed at {} ({} of {} bytes written): {}; nothing was replaced", path,
                          step, done, total, Errno(e)),
              hint);
}

void PublishTmp(int fd, const std::string& tmp, const std::string& path, uint64_t done, uint64_t total) {
  if (::fsync(fd) != 0) AbandonTmp(fd, tmp, path, "fsync", errno, done, total);
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(fmt::format("writing '{}' failed at close: {}; nothing was replaced", path, Errno(e)),
                "check the file system (space, I/O errors)");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", tmp, path, Errno(e)),
                "is the destination a directory, or on another file system?");
  }
  fs::path parent = fs::path(path).parent_path();
  FsyncDirectory(parent.empty() ? std::string(".") : parent.string());
}

// Writes chunks to `path`.tmp, checking every write, then publishes it (PublishTmp).
void WriteChunksAtomic(const std::string& path, const std::vector<Chunk>& chunks) {
  const std::string tmp = path + ".tmp";
  uint64_t total = 0;
  for (const auto& c : chunks) total += c.size;
  const int fd = CreateTmp(tmp, path);
  auto fail = [&](const std::string& step, int e, uint64_t done) { AbandonTmp(fd, tmp, path, step, e, done, total); };
  uint64_t done = 0;
  for (const auto& c : chunks) {
    const char* p = static_cast<const char*>(c.data);
    size_t left = c.size;
    while (left > 0) {
      const ssize_t w = ::write(fd, p, std::min<size_t>(left, size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write", errno, done);
      }
      if (w == 0) fail("write", ENOSPC, done);  // no progress: treat as full
      p += w;
      left -= static_cast<size_t>(w);
      done += static_cast<uint64_t>(w);
    }
  }
  PublishTmp(fd, tmp, path, done, total);
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

// ---- SafetensorsFile -------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int e = errno;
    FailFile(path, "cannot open: " + Errno(e),
             e == ENOENT ? "check the path; a model directory needs config.json and *.safetensors"
                         : "check the file permissions");
  }
  // From here on, any throw must release fd_/map_: the destructor does not run for a
  // constructor that throws.
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) FailFile(path, "fstat failed: " + Errno(errno), "check the file system");
    if (!S_ISREG(st.st_mode)) FailFile(path, "not a regular file", "pass a .safetensors file or a model directory");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < 8)
      FailFile(path, fmt::format("file is only {} bytes; a safetensors file starts with an 8-byte header length", size),
               "the file is empty or truncated: download or copy it again");
    map_ = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      FailFile(path, "mmap failed: " + Errno(errno), "check free address space / file system support for mmap");
    }
    map_size_ = size;
    ::close(fd_);  // the mapping stays valid without the descriptor
    fd_ = -1;

    const auto* bytes = static_cast<const uint8_t*>(map_);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
    if (n == 0)
      FailFile(path, "header length is 0", "not a safetensors file (or it is corrupt)");
    if (n >= kMaxHeaderBytes)
      FailFile(path, fmt::format("header length {} bytes is implausibly large (limit {})", n, kMaxHeaderBytes),
               "not a safetensors file (or it is corrupt)");
    if (n > size - 8)
      FailFile(path,
               fmt::format("header length {} bytes is larger than the file allows ({} bytes after the "
                           "8-byte length field)",
                           n, size - 8),
               "the file is truncated or not a safetensors file: download or copy it again");
    const uint64_t data_size = size - 8 - n;
    data_ = bytes + 8 + n;

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(bytes + 8, bytes + 8 + n);
    } catch (const nlohmann::json::exception& e) {
      FailFile(path, fmt::format("header ({} bytes) is not valid JSON: {}", n, e.what()),
               "the file is corrupt or not a safetensors file");
    }
    if (!header.is_object())
      FailFile(path, "header is JSON but not an object", "the file is corrupt or not a safetensors file");

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (v.is_null()) continue;
        if (!v.is_object()) FailFile(path, "\"__metadata__\" is not an object", "the header is corrupt");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            FailFile(path, fmt::format("\"__metadata__\" value for '{}' is not a string", m.key()),
                     "safetensors metadata maps strings to strings");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string ctx = fmt::format("safetensors '{}': tensor '{}'", path, name);
      if (!v.is_object()) FailFile(path, fmt::format("entry for tensor '{}' is not an object", name), "the header is corrupt");
      if (!v.contains("dtype") || !v["dtype"].is_string())
        FailFile(path, fmt::format("tensor '{}' has no string \"dtype\"", name), "the header is corrupt");
      if (!v.contains("shape") || !v["shape"].is_array())
        FailFile(path, fmt::format("tensor '{}' has no \"shape\" array", name), "the header is corrupt");
      if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        FailFile(path, fmt::format("tensor '{}' has no \"data_offsets\" [begin, end]", name), "the header is corrupt");
      TensorInfo info;
      info.name = name;
      info.dtype = ParseDType(v["dtype"].get<std::string>(), ctx);
      for (const auto& d : v["shape"]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          FailFile(path, fmt::format("tensor '{}' has a shape entry {} that is not a non-negative integer", name, d.dump()),
                   "the header is corrupt");
        info.shape.push_back(d.get<int64_t>());
      }
      for (int k = 0; k < 2; ++k)
        if (!v["data_offsets"][k].is_number_unsigned())
          FailFile(path, fmt::format("tensor '{}' has a data offset {} that is not a non-negative integer", name,
                                     v["data_offsets"][k].dump()),
                   "the header is corrupt");
      info.begin = v["data_offsets"][0].get<uint64_t>();
      info.end = v["data_offsets"][1].get<uint64_t>();
      if (info.end < info.begin)
        FailFile(path, fmt::format("tensor '{}' has data_offsets [{}, {}] with end before begin", name, info.begin, info.end),
                 "the header is corrupt");
      const int64_t numel = CheckedNumel(info.shape);
      uint64_t expected = 0;
      if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(info.dtype), &expected))
        FailFile(path, fmt::format("tensor '{}' shape [{}] overflows", name, fmt::join(info.shape, ", ")),
                 "the header is corrupt");
      if (info.end - info.begin != expected)
        FailFile(path,
                 fmt::format("tensor '{}' is mislabelled: dtype {} x shape [{}] needs {} bytes but data_offsets "
                             "[{}, {}] span {} bytes",
                             name, DTypeName(info.dtype), fmt::join(info.shape, ", "), expected, info.begin,
                             info.end, info.end - info.begin),
                 "the header's dtype/shape do not match its offsets: the file was written wrongly or edited");
      tensors_.emplace(name, std::move(info));
    }

    // Truncation: name the tensor reaching furthest and how much is missing.
    const TensorInfo* last = nullptr;
    for (const auto& [name, info] : tensors_)
      if (!last || info.end > last->end) last = &info;
    if (last && last->end > data_size)
      FailFile(path,
               fmt::format("truncated: tensor '{}' ends at byte {} of the data section but only {} bytes are "
                           "present ({} bytes missing; the file is {} bytes, expected {})",
                           last->name, last->end, data_size, last->end - data_size, size,
                           size + (last->end - data_size)),
               "the download or copy was cut short: fetch the file again");

    // Overlaps: sort non-empty ranges by begin; each must start at or after the previous end.
    std::vector<const TensorInfo*> ranges;
    for (const auto& [name, info] : tensors_)
      if (info.end > info.begin) ranges.push_back(&info);
    std::sort(ranges.begin(), ranges.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
    });
    for (size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i]->begin < ranges[i - 1]->end)
        FailFile(path,
                 fmt::format("tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", ranges[i - 1]->name,
                             ranges[i - 1]->begin, ranges[i - 1]->end, ranges[i]->name, ranges[i]->begin,
                             ranges[i]->end),
                 "the header is corrupt");
  } catch (...) {
    if (map_) ::munmap(map_, map_size_);
    if (fd_ >= 0) ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo& SafetensorsFile::Info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw Error(fmt::format("safetensors '{}': no tensor named '{}' ({} tensors in the file)", path_, name,
                            tensors_.size()),
                "check the tensor name and that the file belongs to this model");
  return it->second;
}

const void* SafetensorsFile::Data(const std::string& name) const { return data_ + Info(name).begin; }

void SafetensorsFile::Release(const std::string& name) const {
  const auto& info = Info(name);
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<uintptr_t>(map_);
  // whole pages inside [begin, end): a page shared with a neighbour is left alone
  uintptr_t lo = reinterpret_cast<uintptr_t>(data_ + info.begin);
  uintptr_t hi = reinterpret_cast<uintptr_t>(data_ + info.end);
  lo = base + (lo - base + page - 1) / page * page;
  hi = base + (hi - base) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);  // advice only
}

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

// ---- SafetensorsCollection -------------------------------------------------------------

SafetensorsCollection::SafetensorsCollection(const std::string& dir_or_file) {
  std::error_code ec;
  const fs::path p(dir_or_file);
  if (!fs::exists(p, ec))
    throw Error(fmt::format("model weights: '{}' does not exist", dir_or_file),
                "pass a Hugging Face model directory (config.json + *.safetensors) or a .safetensors file");
  auto add_whole_file = [&](const fs::path& file) {
    auto f = std::make_unique<SafetensorsFile>(file.string());
    const std::string fname = file.filename().string();
    for (const auto& n : f->Names()) weight_map_[n] = fname;
    open_[fname] = std::move(f);
  };
  if (!fs::is_directory(p, ec)) {
    dir_ = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    add_whole_file(p);
    return;
  }
  dir_ = p.string();
  const fs::path index = p / kIndexName;
  if (fs::exists(index, ec)) {
    const std::string text = ReadFileToString(index.string());
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("sharded weights index '{}' is not valid JSON: {}", index.string(), e.what()),
                  "the file is corrupt; download it again");
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(fmt::format("sharded weights index '{}' has no \"weight_map\" object", index.string()),
                  "expected {\"metadata\": {...}, \"weight_map\": {tensor: file}}");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw Error(fmt::format("sharded weights index '{}': weight_map entry for '{}' is not a file name",
                                index.string(), it.key()),
                    "the file is corrupt");
      weight_map_[it.key()] = it.value().get<std::string>();
    }
    if (weight_map_.empty())
      throw Error(fmt::format("sharded weights index '{}' lists no tensors", index.string()), "the file is corrupt");
    for (const auto& f : Files())
      if (!fs::is_regular_file(p / f, ec))
        throw Error(fmt::format("sharded weights index '{}' names '{}', which is missing from '{}'", index.string(),
                                f, dir_),
                    "the download is incomplete: fetch every model-*-of-*.safetensors file");
    return;
  }
  if (fs::exists(p / kSingleName, ec)) {
    add_whole_file(p / kSingleName);
    return;
  }
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") found.push_back(e.path());
  if (found.size() == 1) {
    add_whole_file(found[0]);
    return;
  }
  if (found.empty())
    throw Error(fmt::format("model weights: no safetensors in '{}' (looked for {}, {}, or a single "
                            "*.safetensors file)",
                            dir_, kIndexName, kSingleName),
                "is this a Hugging Face model directory? .bin (pickle) checkpoints must be converted to "
                "safetensors first");
  std::vector<std::string> names;
  for (const auto& f : found) names.push_back(f.filename().string());
  std::sort(names.begin(), names.end());
  throw Error(fmt::format("model weights: '{}' holds {} .safetensors files ({}) but no {} saying which "
                          "tensor is in which",
                          dir_, names.size(), fmt::join(names, ", "), kIndexName),
              "add the index file from the original download, or keep only one .safetensors file");
}

bool SafetensorsCollection::Has(const std::string& name) const { return weight_map_.count(name) != 0; }

const SafetensorsFile& SafetensorsCollection::FileFor(const std::string& name) const {
  auto it = weight_map_.find(name);
  if (it == weight_map_.end())
    throw Error(fmt::format("model weights: tensor '{}' not found in '{}' ({} tensors there)", name, dir_,
                            weight_map_.size()),
                "is this a checkpoint of the expected architecture (Hugging Face LLaMA names), matching "
                "config.json?");
  std::lock_guard<std::mutex> lock(*mu_);
  auto& slot = open_[it->second];
  if (!slot) slot = std::make_unique<SafetensorsFile>((fs::path(dir_) / it->second).string());
  if (!slot->Has(name))
    throw Error(fmt::format("model weights: the index in '{}' maps tensor '{}' to '{}', but that file does "
                            "not contain it",
                            dir_, name, it->second),
                "the index and the shard files come from different downloads");
  return *slot;
}

std::vector<std::string> SafetensorsCollection::Names() const {
  std::vector<std::string> out;
  out.reserve(weight_map_.size());
  for (const auto& [name, file] : weight_map_) out.push_back(name);
  return out;
}

std::vector<std::string> SafetensorsCollection::Files() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : weight_map_) out.push_back(file);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// ---- SafetensorsWriter -----------------------------------------------------------------

void SafetensorsWriter::Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  if (name == "__metadata__")
    throw Error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  for (const auto& e : entries_)
    if (e.name == name) throw Error(fmt::format("safetensors writer: tensor '{}' added twice", name));
  for (int64_t d : shape)
    if (d < 0) throw Error(fmt::format("safetensors writer: tensor '{}' has a negative dimension", name));
  const int64_t numel = CheckedNumel(shape);
  if (numel < 0 || static_cast<uint64_t>(numel) * DTypeSize(dtype) != nbytes)
    throw Error(fmt::format("safetensors writer: tensor '{}' dtype {} shape [{}] needs {} bytes, got {}", name,
                            DTypeName(dtype), fmt::join(shape, ", "),
                            numel < 0 ? 0 : static_cast<uint64_t>(numel) * DTypeSize(dtype), nbytes));
  Entry e{name, dtype, std::move(shape), {}};
  if (nbytes > 0) {
    const auto* p = static_cast<const uint8_t*>(data);
    e.bytes.assign(p, p + nbytes);
  }
  entries_.push_back(std::move(e));
}

uint64_t SafetensorsWriter::Write(const std::string& path) const {
  std::vector<const Entry*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->name < b->name; });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry* e : order) {
    header[e->name] = {{"dtype", DTypeName(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->bytes.size()}}};
    offset += e->bytes.size();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');  // data section starts 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  std::vector<Chunk> chunks{{len, 8}, {text.data(), text.size()}};
  for (const Entry* e : order)
    if (!e->bytes.empty()) chunks.push_back({e->bytes.data(), e->bytes.size()});
  WriteChunksAtomic(path, chunks);
  return 8 + text.size() + offset;
}

// ---- SafetensorsStreamWriter -----------------------------------------------------------

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string path, std::vector<TensorInfo> tensors,
                                                 const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), tensors_(std::move(tensors)) {
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    auto& t = tensors_[i];
    if (t.name == "__metadata__" || (i > 0 && tensors_[i - 1].name == t.name))
      throw Error(fmt::format("safetensors writer '{}': tensor name '{}' reserved or repeated", path_, t.name));
    const int64_t numel = CheckedNumel(t.shape);
    if (numel < 0) throw Error(fmt::format("safetensors writer '{}': tensor '{}' is too large", path_, t.name));
    t.begin = offset;
    t.end = offset + static_cast<uint64_t>(numel) * DTypeSize(t.dtype);
    offset = t.end;
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  total_ = 8 + text.size() + offset;
  fd_ = CreateTmp(tmp_, path_);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  data_start_ = 8 + text.size();
  written_.assign(tensors_.size(), 0);
  WriteAll(len, 8, 0);
  WriteAll(text.data(), text.size(), 8);
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void SafetensorsStreamWriter::Fail(const std::string& step, int e) {
  const int fd = fd_;
  fd_ = -1;
  AbandonTmp(fd, tmp_, path_, step, e, done_, total_);
}

void SafetensorsStreamWriter::WriteAll(const void* data, size_t n, uint64_t at) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(at));
    if (w < 0) {
      if (errno == EINTR) continue;
      Fail("write", errno);
    }
    if (w == 0) Fail("write", ENOSPC);
    p += w;
    n -= static_cast<size_t>(w);
    at += static_cast<uint64_t>(w);
    done_ += static_cast<uint64_t>(w);
  }
}

void SafetensorsStreamWriter::Append(const std::string& name, const void* data, size_t nbytes) {
  if (fd_ < 0) throw Error(fmt::format("safetensors writer '{}': append after the file was closed", path_));
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name)
    throw Error(fmt::format("safetensors writer '{}': tensor '{}' was not declared", path_, name));
  auto& written = written_[static_cast<size_t>(it - tensors_.begin())];
  if (written + nbytes > it->end - it->begin)
    throw Error(fmt::format("safetensors writer '{}': tensor '{}' given {} bytes, needs {}", path_, name,
                            written + nbytes, it->end - it->begin));
  WriteAll(data, nbytes, data_start_ + it->begin + written);
  written += nbytes;
}

uint64_t SafetensorsStreamWriter::Finish() {
  if (fd_ < 0) throw Error(fmt::format("safetensors writer '{}': finished twice", path_));
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (written_[i] != tensors_[i].end - tensors_[i].begin)
      throw Error(fmt::format("safetensors writer '{}': tensor '{}' has {} of its {} bytes at Finish", path_,
                              tensors_[i].name, written_[i], tensors_[i].end - tensors_[i].begin));
  const int fd = fd_;
  fd_ = -1;
  PublishTmp(fd, tmp_, path_, done_, total_);
  return total_;
}

// ---- whole files -----------------------------------------------------------------------

void WriteFileAtomic(const std::string& path, const std::string& contents) {
  WriteChunksAtomic(path, {{contents.data(), contents.size()}});
}

std::string ReadFileToString(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(fmt::format("cannot read '{}': {}", path, Errno(e)),
                e == ENOENT ? "check the path" : "check the file permissions");
  }
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      throw Error(fmt::format("reading '{}' failed: {}", path, Errno(e)), "check the file system");
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

void FsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(fmt::format("cannot open directory '{}' to fsync it: {}", dir, Errno(e)),
                "check that the directory exists");
  }
  if (::fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
    const int e = errno;
    ::close(fd);
    throw Error(fmt::format("fsync of directory '{}' failed: {}", dir, Errno(e)), "check the file system");
  }
  ::close(fd);
}

}  // namespace more
