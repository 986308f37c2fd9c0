// Safetensors reading (mmap; the header rules are in safetensors_header.cpp) and sharded collections.
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

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string Errno(int e) { return std::strerror(e); }

[[noreturn]] void FailFile(const std::string& path, const std::string& what, const std::string& hint) {
  throw Error(fmt::format("safetensors '{}': {}", path, what), hint);
}

}  // namespace

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
    if (size < 8)  // (ParseSafetensorsHeader says so too, but mmap of an empty file fails first)
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
    SafetensorsHeader h = ParseSafetensorsHeader(bytes, size, path);
    data_ = bytes + h.data_start;
    tensors_ = std::move(h.tensors);
    metadata_ = std::move(h.metadata);
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
      const std::string file = it.value().get<std::string>();
      // a shard is a file beside the index: a path (or "..") could name any file on the machine
      if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
          file.find('\0') != std::string::npos)
        throw Error(fmt::format("sharded weights index '{}': weight_map entry for '{}' is '{}', not a file name in "
                                "the model directory",
                                index.string(), it.key(), file),
                    "the index names the shard files beside it (model-00001-of-00002.safetensors); it is corrupt or "
                    "was edited");
      weight_map_[it.key()] = file;
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

}  // namespace more
