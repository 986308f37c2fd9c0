// Hugging Face safetensors, read and written without torch.
//
// File layout: u64 little-endian N | N bytes of JSON header | raw data.
// Header: { "__metadata__": {str: str}, "<name>": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [..],
//           "data_offsets": [begin, end]} }  offsets relative to the start of the data section.
// Reading memory-maps the file (POSIX mmap, read-only) and validates everything that a
// truncated, corrupt or mislabelled file could get wrong: header length, JSON, dtype names,
// offsets inside the file, offsets matching shape x dtype size, no overlap.
// A sharded checkpoint (model.safetensors.index.json: {"weight_map": {name: file}}) is opened
// as one SafetensorsCollection; each rank then reads only the tensors (and row/column slices)
// it owns.
// Writing follows the Hugging Face writer: tensors sorted by name and laid out in that order,
// the JSON header padded with spaces to a multiple of 8 bytes so every tensor's data starts
// 8-byte aligned in the file (and in the memory map). See docs/formats.md.
// Float conversions without torch (BF16/F16 <-> F32): more/core/dtype_convert.h.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
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

class SafetensorsFile {
 public:
  // Opens and validates; throws more::Error naming the file and the problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool Has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& Info(const std::string& name) const;  // throws if absent
  const void* Data(const std::string& name) const;         // pointer into the mapping
  std::vector<std::string> Names() const;
  const std::map<std::string, std::string>& Metadata() const { return metadata_; }
  size_t file_size() const { return map_size_; }
  // Drops this tensor's pages from the process (madvise MADV_DONTNEED on the whole pages it
  // covers): a streaming reader calls it when done with a tensor, so resident memory stays at
  // about one tensor however large the file. Data() stays valid (pages are read again if touched).
  void Release(const std::string& name) const;

 private:
  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A directory (or a single file) holding model.safetensors or a sharded set with
// model.safetensors.index.json. Files are opened lazily.
// Given a directory, looks in this order for: model.safetensors.index.json (its "weight_map"
// names the file of every tensor; every file it names must exist), model.safetensors, the only
// *.safetensors file. Given a file, uses just that file. FileFor is safe to call from several
// threads.
class SafetensorsCollection {
 public:
  explicit SafetensorsCollection(const std::string& dir_or_file);
  bool Has(const std::string& name) const;
  const SafetensorsFile& FileFor(const std::string& name) const;  // throws naming the tensor
  std::vector<std::string> Names() const;
  const std::string& dir() const { return dir_; }  // the directory the files are in
  // File names (relative to dir()) in use, sorted and without duplicates.
  std::vector<std::string> Files() const;

 private:
  std::string dir_;
  std::map<std::string, std::string> weight_map_;  // tensor -> file name
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();  // guards open_
};

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
