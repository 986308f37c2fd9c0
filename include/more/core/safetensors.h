// Hugging Face safetensors, read and written without torch.
//
// File layout: u64 little-endian N | N bytes of JSON header | raw data.
// Header: { "__metadata__": {str: str}, "<name>": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [..],
//           "data_offsets": [begin, end]} }  offsets relative to the start of the data section.
// Reading memory-maps the file (POSIX mmap, read-only) and validates it by the reference
// implementation's rules (ParseSafetensorsHeader, more/core/safetensors_header.h): header length,
// JSON, dtype names, offsets matching shape x dtype size, and the tensors tiling the data section
// exactly (no gap, no overlap, nothing after the last tensor).
// A sharded checkpoint (model.safetensors.index.json: {"weight_map": {name: file}}) is opened
// as one SafetensorsCollection; each rank then reads only the tensors (and row/column slices)
// it owns.
// Writing: more/core/safetensors_writer.h. See docs/formats.md.
// Float conversions without torch (BF16/F16 <-> F32): more/core/dtype_convert.h.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "more/core/safetensors_header.h"
#include "more/core/safetensors_writer.h"

namespace more {

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

}  // namespace more
