// Writing safetensors files (whole, or tensor by tensor for files larger than memory), and the
// atomic whole-file helpers: every file is written as <path>.tmp, checked write by write,
// fsynced and renamed. Layout as the Hugging Face writer: tensors sorted by name and laid out in
// that order, the JSON header padded with spaces to a multiple of 8 bytes so every tensor's data
// starts 8-byte aligned. See docs/formats.md.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "more/core/safetensors_header.h"

namespace more {

// Writes a safetensors file atomically (to path + ".tmp", fsync, rename).
class SafetensorsWriter {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Returns the number of bytes written. Throws more::Error (e.g. disk full) leaving any
  // earlier file at `path` untouched.
  uint64_t Write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes a safetensors file tensor by tensor without holding the data (for files larger than
// memory): the tensors (name, dtype, shape) are declared up front, which fixes the header and
// the layout (sorted by name, as the Hugging Face writer lays them out; Order() has the
// offsets); Append then takes each tensor's bytes, in any order and in any number of pieces,
// written in place (pwrite); Finish() checks every tensor is complete, fsyncs and renames
// `path`.tmp onto `path`.
// Errors name the path, the step and the bytes written (as SafetensorsWriter::Write); a writer
// destroyed before Finish (an exception) removes its .tmp file, leaving `path` untouched.
class SafetensorsStreamWriter {
 public:
  SafetensorsStreamWriter(std::string path, std::vector<TensorInfo> tensors,
                          const std::map<std::string, std::string>& metadata);
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  const std::vector<TensorInfo>& Order() const { return tensors_; }  // with data offsets
  // Appends the next piece of tensor `name`'s bytes.
  void Append(const std::string& name, const void* data, size_t nbytes);
  uint64_t Finish();  // returns the file size

 private:
  void WriteAll(const void* data, size_t n, uint64_t at);
  [[noreturn]] void Fail(const std::string& step, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<TensorInfo> tensors_;   // sorted by name
  std::vector<uint64_t> written_;     // bytes of each tensor written so far
  uint64_t data_start_ = 0, done_ = 0, total_ = 0;
};

// Writes a whole file atomically: tmp + fsync + rename. Throws naming the path on failure.
void WriteFileAtomic(const std::string& path, const std::string& contents);
std::string ReadFileToString(const std::string& path);  // throws naming the path
// fsync()s a directory so that a rename into it survives a crash; best effort on file systems
// that do not support it (EINVAL), otherwise throws naming the directory.
void FsyncDirectory(const std::string& dir);

}  // namespace more
