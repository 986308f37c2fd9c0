// Helpers shared by the data-pipeline tests: a temporary directory, synthetic rows with known
// contents, and HDF5 surgery to corrupt a shard on purpose.
#pragma once
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "more/data/packing.h"
#include "more/data/shard_writer.h"

namespace more::testing_util {

namespace fs = std::filesystem;

using more::testing::TempDir;

// A random row: length in [2, max_len], prompt in [1, length), BOS (1), ids in [3, 500), EOS
// (2), mask 1 from the prompt on, a label index in [-1, n_candidates) and a label value.
inline Sample RandomSample(std::mt19937& rng, int max_len, int n_candidates) {
  Sample s;
  const int n = 2 + static_cast<int>(rng() % static_cast<unsigned>(max_len - 1));
  s.prompt_length = 1 + static_cast<int>(rng() % static_cast<unsigned>(n - 1));
  for (int j = 0; j < n; ++j) {
    // BOS (1) first, EOS (2) last, as packing makes them (the writer enforces it)
    s.ids.push_back(j == 0 ? 1 : j == n - 1 ? 2 : 3 + static_cast<int32_t>(rng() % 497));
    s.target_mask.push_back(j >= s.prompt_length ? 1 : 0);
  }
  s.label_index = static_cast<int32_t>(rng() % static_cast<unsigned>(n_candidates + 1)) - 1;
  s.label_value = static_cast<float>(rng() % 1000) / 8.0f;
  return s;
}

inline ShardMeta MakeMeta(const std::vector<TaskInfo>& tasks, int max_len, const std::string& split,
                          int index, int count, const std::string& hash = "feedfacecafebeef") {
  ShardMeta m;
  m.tokenizer_hash = hash;
  m.max_len = max_len;
  m.split = split;
  m.shard_index = index;
  m.num_shards = count;
  m.tasks = tasks;
  m.vocab_size = 512;  // RandomSample's ids are < 500
  return m;
}

// Overwrites element `row` of the 1-D int32 dataset /tasks/<task>/<name> of an existing file.
inline void PokeInt(const std::string& file, const std::string& task, const std::string& name, hsize_t row,
                    int32_t value) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("PokeInt: cannot open " + file);
  const std::string ds_name = "/tasks/" + task + "/" + name;
  const hid_t ds = H5Dopen2(f, ds_name.c_str(), H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  hsize_t start = row, count = 1;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  const hid_t mem = H5Screate_simple(1, &count, nullptr);
  const herr_t st = H5Dwrite(ds, H5T_NATIVE_INT32, mem, space, H5P_DEFAULT, &value);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  if (st < 0) throw std::runtime_error("PokeInt: write failed");
}

// Overwrites input_ids[row, col] of task `task` through HDF5 (so any checksum is updated too).
inline void PokeId(const std::string& file, const std::string& task, hsize_t row, hsize_t col, int32_t value) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) { H5Eprint2(H5E_DEFAULT, stderr); throw std::runtime_error("PokeId: cannot open " + file); }
  const std::string ds_name = "/tasks/" + task + "/input_ids";
  const hid_t ds = H5Dopen2(f, ds_name.c_str(), H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  hsize_t start[2] = {row, col}, count[2] = {1, 1};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  const hid_t mem = H5Screate_simple(2, count, nullptr);
  const herr_t st = H5Dwrite(ds, H5T_NATIVE_INT32, mem, space, H5P_DEFAULT, &value);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  if (st < 0) throw std::runtime_error("PokeId: write failed");
}

// File offset and size of the first stored chunk of /tasks/<task>/<name> (for raw corruption
// that bypasses HDF5, as a bad disk would).
inline std::pair<haddr_t, hsize_t> FirstChunk(const std::string& file, const std::string& task, const std::string& name) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("FirstChunk: cannot open " + file);
  const std::string ds_name = "/tasks/" + task + "/" + name;
  const hid_t ds = H5Dopen2(f, ds_name.c_str(), H5P_DEFAULT);
  hsize_t offset[2] = {0, 0}, size = 0;
  unsigned mask = 0;
  haddr_t addr = 0;
  const hid_t space = H5Dget_space(ds);
  const herr_t st = H5Dget_chunk_info(ds, space, 0, offset, &mask, &addr, &size);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  if (st < 0) { H5Eprint2(H5E_DEFAULT, stderr); throw std::runtime_error("FirstChunk: no chunk info"); }
  return {addr, size};
}

// Replaces the int64 root attribute `name` of an existing file.
inline void SetRootIntAttr(const std::string& file, const std::string& name, int64_t value) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("SetRootIntAttr: cannot open " + file);
  H5Adelete(f, name.c_str());
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(f, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &value);
  H5Aclose(a);
  H5Sclose(space);
  H5Fclose(f);
}

// Replaces a root attribute by an array of `n` int64 values (a damaged or foreign file: the
// shards write single values).
inline void SetRootIntArrayAttr(const std::string& file, const std::string& name, hsize_t n, int64_t value) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("SetRootIntArrayAttr: cannot open " + file);
  H5Adelete(f, name.c_str());
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t a = H5Acreate2(f, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  const std::vector<int64_t> values(n, value);
  H5Awrite(a, H5T_NATIVE_INT64, values.data());
  H5Aclose(a);
  H5Sclose(space);
  H5Fclose(f);
}

// Replaces a root string attribute (fixed length, as the shards write them).
inline void SetRootStringAttr(const std::string& file, const std::string& name, const std::string& value) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("SetRootStringAttr: cannot open " + file);
  H5Adelete(f, name.c_str());
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(f, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, type, value.c_str());
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
  H5Fclose(f);
}

}  // namespace more::testing_util
