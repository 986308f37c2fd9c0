// Safetensors writing (whole-file and streaming) and the atomic file helpers both use.
// The file format: docs/formats.md.
#include "more/core/safetensors_writer.h"

#include <fcntl.h>
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


std::string Errno(int e) { return std::strerror(e); }

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
