#include "more/data/shard_writer.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <system_error>
#include <vector>

#include "more/core/error.h"
#include "more/data/hdf5_util.h"

namespace more {

namespace fs = std::filesystem;

struct ShardWriter::Impl {
  struct TaskOut {
    h5::Id group, ids, mask, lengths, prompt, label_index, label_value;
    int64_t written = 0;  // rows already in the file
    // Buffered rows, [buffered, max_len] / [buffered]:
    std::vector<int32_t> ids_buf;
    std::vector<uint8_t> mask_buf;
    std::vector<int32_t> len_buf, prompt_buf, li_buf;
    std::vector<float> lv_buf;
    int64_t buffered() const { return static_cast<int64_t>(len_buf.size()); }
  };

  std::string path, tmp_path;
  ShardMeta meta;
  int chunk_rows = 1;
  h5::Id file;
  std::vector<TaskOut> tasks;
  bool closed = false;

  h5::Id CreateDataset(hid_t group, const char* name, hid_t type, int rank) {
    const hsize_t ml = static_cast<hsize_t>(meta.max_len);
    hsize_t dims[2] = {0, ml};
    hsize_t maxdims[2] = {H5S_UNLIMITED, ml};
    hsize_t chunk[2] = {static_cast<hsize_t>(chunk_rows), ml};
    h5::Id space = h5::Check(H5Screate_simple(rank, dims, maxdims), "H5Screate_simple");
    h5::Id dcpl = h5::Check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate");
    h5::Check(H5Pset_chunk(dcpl.get(), rank, chunk), "H5Pset_chunk");
    // a checksum per chunk, verified by HDF5 on every read of the chunk (format version 2)
    h5::Check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
    return h5::Check(H5Dcreate2(group, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                     fmt::format("{}: cannot create dataset '{}'", tmp_path, name));
  }

  // Appends `n` rows from `data` ([n] or [n, max_len]) to `ds`, whose current extent is `at`.
  void AppendRows(hid_t ds, hid_t mem_type, int rank, int64_t at, int64_t n, const void* data,
                  const char* name) {
    const hsize_t ml = static_cast<hsize_t>(meta.max_len);
    hsize_t new_dims[2] = {static_cast<hsize_t>(at + n), ml};
    const std::string what = fmt::format("{}: writing '{}'", tmp_path, name);
    h5::Check(H5Dset_extent(ds, new_dims), what);
    h5::Id fspace = h5::Check(H5Dget_space(ds), what);
    hsize_t start[2] = {static_cast<hsize_t>(at), 0};
    hsize_t count[2] = {static_cast<hsize_t>(n), ml};
    h5::Check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), what);
    h5::Id mspace = h5::Check(H5Screate_simple(rank, count, nullptr), what);
    h5::Check(H5Dwrite(ds, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data), what);
  }

  void Flush(TaskOut& t) {
    const int64_t n = t.buffered();
    if (n == 0) return;
    AppendRows(t.ids.get(), H5T_NATIVE_INT32, 2, t.written, n, t.ids_buf.data(), "input_ids");
    AppendRows(t.mask.get(), H5T_NATIVE_UINT8, 2, t.written, n, t.mask_buf.data(), "target_mask");
    AppendRows(t.lengths.get(), H5T_NATIVE_INT32, 1, t.written, n, t.len_buf.data(), "lengths");
    AppendRows(t.prompt.get(), H5T_NATIVE_INT32, 1, t.written, n, t.prompt_buf.data(), "prompt_lengths");
    AppendRows(t.label_index.get(), H5T_NATIVE_INT32, 1, t.written, n, t.li_buf.data(), "label_index");
    AppendRows(t.label_value.get(), H5T_NATIVE_FLOAT, 1, t.written, n, t.lv_buf.data(), "label_value");
    t.written += n;
    t.ids_buf.clear();
    t.mask_buf.clear();
    t.len_buf.clear();
    t.prompt_buf.clear();
    t.li_buf.clear();
    t.lv_buf.clear();
  }

  void CloseHandles() {
    for (auto& t : tasks) {
      t.ids.Reset();
      t.mask.Reset();
      t.lengths.Reset();
      t.prompt.Reset();
      t.label_index.Reset();
      t.label_value.Reset();
      t.group.Reset();
    }
    file.Reset();
  }
};

ShardWriter::ShardWriter(std::string path, ShardMeta meta) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = std::move(path);
  m.tmp_path = m.path + ".tmp";
  m.meta = std::move(meta);
  ValidateTasks(m.meta.tasks, "shard '" + m.path + "'");
  if (m.meta.max_len < 2) Fail("shard '{}': max_len {} must be >= 2", m.path, m.meta.max_len);
  const fs::path parent = fs::path(m.path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    throw Error("cannot write shard '" + m.path + "': directory '" + parent.string() + "' does not exist",
                "create the output directory first");
  m.chunk_rows = ShardChunkRows(m.meta.max_len);

  h5::Lock lock(h5::Hdf5Mutex());
  h5::Hdf5Init();
  m.file = h5::Check(H5Fcreate(m.tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                     "cannot create shard file '" + m.tmp_path + "'");
  const hid_t root = m.file.get();
  h5::WriteAttr(root, "format_version", int64_t{kShardFormatVersion});
  h5::WriteAttr(root, "tokenizer_hash", m.meta.tokenizer_hash);
  h5::WriteAttr(root, "max_len", int64_t{m.meta.max_len});
  h5::WriteAttr(root, "vocab_size", int64_t{m.meta.vocab_size});
  h5::WriteAttr(root, "bos_id", int64_t{m.meta.bos_id});
  h5::WriteAttr(root, "eos_id", int64_t{m.meta.eos_id});
  h5::WriteAttr(root, "pad_id", int64_t{m.meta.pad_id});
  h5::WriteAttr(root, "split", m.meta.split);
  h5::WriteAttr(root, "tasks", TasksToJson(m.meta.tasks));
  h5::WriteAttr(root, "shard_index", int64_t{m.meta.shard_index});
  h5::WriteAttr(root, "num_shards", int64_t{m.meta.num_shards});
  h5::Id tasks_group = h5::Check(H5Gcreate2(root, "tasks", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                 m.tmp_path + ": cannot create group /tasks");
  m.tasks.resize(m.meta.tasks.size());
  for (size_t i = 0; i < m.tasks.size(); ++i) {
    auto& t = m.tasks[i];
    const std::string& name = m.meta.tasks[i].name;
    t.group = h5::Check(H5Gcreate2(tasks_group.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        m.tmp_path + ": cannot create group /tasks/" + name);
    const hid_t g = t.group.get();
    t.ids = m.CreateDataset(g, "input_ids", H5T_STD_I32LE, 2);
    t.mask = m.CreateDataset(g, "target_mask", H5T_STD_U8LE, 2);
    t.lengths = m.CreateDataset(g, "lengths", H5T_STD_I32LE, 1);
    t.prompt = m.CreateDataset(g, "prompt_lengths", H5T_STD_I32LE, 1);
    t.label_index = m.CreateDataset(g, "label_index", H5T_STD_I32LE, 1);
    t.label_value = m.CreateDataset(g, "label_value", H5T_IEEE_F32LE, 1);
  }
}

ShardWriter::~ShardWriter() {
  if (!impl_ || impl_->closed) return;
  h5::Lock lock(h5::Hdf5Mutex());
  impl_->CloseHandles();
  std::error_code ec;
  fs::remove(impl_->tmp_path, ec);  // never leave a half shard behind
}

void ShardWriter::Append(int task, const Sample& s) {
  Impl& m = *impl_;
  if (m.closed) throw Error("shard '" + m.path + "': Append() after Close()");
  if (task < 0 || task >= static_cast<int>(m.tasks.size()))
    Fail("shard '{}': task index {} outside [0, {})", m.path, task, m.tasks.size());
  const TaskInfo& info = m.meta.tasks[static_cast<size_t>(task)];
  const auto n = static_cast<int64_t>(s.ids.size());
  const std::string where =
      fmt::format("shard '{}', task '{}', row {}", m.path, info.name,
                  m.tasks[static_cast<size_t>(task)].written + m.tasks[static_cast<size_t>(task)].buffered());
  if (n < 2 || n > m.meta.max_len)
    Fail("{}: row has {} tokens, outside [2, max_len={}]", where, n, m.meta.max_len);
  if (s.target_mask.size() != s.ids.size())
    Fail("{}: target_mask has {} entries for {} ids", where, s.target_mask.size(), n);
  if (s.prompt_length < 1 || s.prompt_length >= n)
    Fail("{}: prompt_length {} outside [1, {})", where, s.prompt_length, n);
  if (s.label_index < -1 || s.label_index >= static_cast<int>(info.candidates.size()))
    Fail("{}: label_index {} outside [-1, {})", where, s.label_index, info.candidates.size());
  // the row structure the reader checks (format version 2): BOS + prompt + target + EOS, the
  // mask 1 exactly from the prompt's end, every id in the vocabulary
  if (s.ids.front() != m.meta.bos_id || s.ids.back() != m.meta.eos_id)
    Fail("{}: row must start with bos_id {} and end with eos_id {}, not {} ... {}", where, m.meta.bos_id,
         m.meta.eos_id, s.ids.front(), s.ids.back());
  for (int64_t j = 0; j < n; ++j) {
    if (s.target_mask[static_cast<size_t>(j)] != (j >= s.prompt_length ? 1 : 0))
      Fail("{}: target_mask[{}] is {}; it must be 0 on BOS + prompt and 1 on target + EOS", where, j,
           s.target_mask[static_cast<size_t>(j)]);
    if (m.meta.vocab_size > 0 && (s.ids[static_cast<size_t>(j)] < 0 || s.ids[static_cast<size_t>(j)] >= m.meta.vocab_size))
      Fail("{}: token id {} outside [0, vocab_size={})", where, s.ids[static_cast<size_t>(j)], m.meta.vocab_size);
  }

  auto& t = m.tasks[static_cast<size_t>(task)];
  const size_t ml = static_cast<size_t>(m.meta.max_len);
  const size_t base = t.ids_buf.size();
  t.ids_buf.resize(base + ml, 0);
  t.mask_buf.resize(base + ml, 0);
  std::copy(s.ids.begin(), s.ids.end(), t.ids_buf.begin() + static_cast<std::ptrdiff_t>(base));
  std::copy(s.target_mask.begin(), s.target_mask.end(),
            t.mask_buf.begin() + static_cast<std::ptrdiff_t>(base));
  t.len_buf.push_back(static_cast<int32_t>(n));
  t.prompt_buf.push_back(s.prompt_length);
  t.li_buf.push_back(s.label_index);
  t.lv_buf.push_back(s.label_value);
  if (t.buffered() >= m.chunk_rows) {
    h5::Lock lock(h5::Hdf5Mutex());
    m.Flush(t);
  }
}

void ShardWriter::Close() {
  Impl& m = *impl_;
  if (m.closed) return;
  {
    h5::Lock lock(h5::Hdf5Mutex());
    for (auto& t : m.tasks) m.Flush(t);
    h5::Check(H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL), "cannot flush shard '" + m.tmp_path + "'");
    m.CloseHandles();
  }
  std::error_code ec;
  fs::rename(m.tmp_path, m.path, ec);
  if (ec) throw Error("cannot rename '" + m.tmp_path + "' to '" + m.path + "': " + ec.message());
  m.closed = true;
}

const std::string& ShardWriter::path() const { return impl_->path; }

int64_t ShardWriter::rows(int task) const {
  const auto& t = impl_->tasks.at(static_cast<size_t>(task));
  return t.written + t.buffered();
}

}  // namespace more
