#include "more/data/shard_set.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "more/core/error.h"
#include "more/data/hdf5_util.h"

namespace more {

namespace fs = std::filesystem;

namespace {

struct TaskData {
  h5::Id ids, mask, lengths, prompt, label_index, label_value;  // datasets of /tasks/<name>
};

struct Shard {
  std::string path;
  h5::Id file;
  ShardMeta meta;
  std::vector<TaskData> tasks;
};

const char* const kHintRebuild = "re-create the shards with `shard_data build`";

h5::Id OpenDataset(hid_t group, const std::string& name, const std::string& where) {
  if (H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0)
    throw Error(where + ": missing dataset '" + name + "'", kHintRebuild);
  return h5::Check(H5Dopen2(group, name.c_str(), H5P_DEFAULT),
                   where + ": cannot open dataset '" + name + "'");
}

// Version-2 shards carry a Fletcher-32 checksum in every chunk; a dataset without the filter
// would be read unverified, so it is refused.
void RequireChecksum(hid_t ds, const std::string& where) {
  h5::Id dcpl = h5::Check(H5Dget_create_plist(ds), where + ": cannot get its creation properties");
  unsigned flags = 0;
  size_t nelmts = 0;
  unsigned config = 0;
  if (H5Pget_filter_by_id2(dcpl.get(), H5Z_FILTER_FLETCHER32, &flags, &nelmts, nullptr, 0, nullptr, &config) < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw Error(where + ": has no checksum (Fletcher-32 filter) although the shard's format version says so",
                kHintRebuild);
  }
}

Shard OpenShard(const std::string& path) {
  if (!fs::exists(path))
    throw Error("shard file '" + path + "' does not exist", "check the data paths / run shard_data build");
  if (!fs::is_regular_file(path)) throw Error("shard path '" + path + "' is not a regular file");
  Shard sh;
  sh.path = path;
  const std::string where = "shard '" + path + "'";
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    const std::string detail = is_h5 < 0 ? " (" + h5::Hdf5ErrorText() + ")" : "";
    throw Error(where + " is not an HDF5 file: corrupt, truncated or not a shard" + detail, kHintRebuild);
  }
  sh.file = h5::Check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                      where + ": cannot open (truncated or corrupt HDF5 file?)");
  const hid_t root = sh.file.get();
  ShardMeta& m = sh.meta;
  // Integer attributes are stored as int64: each is range-checked before it is narrowed, so a
  // damaged value cannot wrap into a plausible one (2^32 + 2 read as format version 2).
  auto read_int = [&](const char* name, int64_t lo, int64_t hi) {
    const int64_t v = h5::ReadIntAttr(root, name, where);
    if (v < lo || v > hi)
      throw Error(fmt::format("{}: attribute '{}' = {} is outside [{}, {}]", where, name, v, lo, hi), kHintRebuild);
    return v;
  };
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  m.format_version = static_cast<int>(read_int("format_version", std::numeric_limits<int32_t>::min(), kInt32Max));
  if (m.format_version != kShardFormatVersion && m.format_version != kShardFormatVersionNoChecksums)
    throw Error(fmt::format("{}: shard format version {} is not supported (this build reads versions {} and {})",
                            where, m.format_version, kShardFormatVersionNoChecksums, kShardFormatVersion),
                "re-create the shards with this build's shard_data");
  m.tokenizer_hash = h5::ReadStringAttr(root, "tokenizer_hash", where);
  m.max_len = static_cast<int>(read_int("max_len", 2, kInt32Max));
  m.vocab_size = read_int("vocab_size", 1, kInt32Max);
  m.bos_id = static_cast<int32_t>(read_int("bos_id", 0, m.vocab_size - 1));
  m.eos_id = static_cast<int32_t>(read_int("eos_id", 0, m.vocab_size - 1));
  m.pad_id = static_cast<int32_t>(read_int("pad_id", 0, m.vocab_size - 1));
  m.split = h5::ReadStringAttr(root, "split", where);
  m.num_shards = static_cast<int>(read_int("num_shards", 1, kInt32Max));
  m.shard_index = static_cast<int>(read_int("shard_index", 0, m.num_shards - 1));
  m.tasks = TasksFromJson(h5::ReadStringAttr(root, "tasks", where), where);
  for (const auto& t : m.tasks)
    for (const auto& cand : t.candidate_ids)
      for (int32_t id : cand)
        if (id < 0 || id >= m.vocab_size)
          Fail("{}, task '{}': candidate token id {} outside [0, vocab_size={}) (hint: {})", where, t.name, id,
               m.vocab_size, kHintRebuild);

  for (auto& info : m.tasks) {
    const std::string gname = "/tasks/" + info.name;
    const std::string twhere = where + ", task '" + info.name + "'";
    if (H5Lexists(root, "tasks", H5P_DEFAULT) <= 0 || H5Lexists(root, gname.c_str(), H5P_DEFAULT) <= 0)
      throw Error(twhere + ": group " + gname + " is missing", kHintRebuild);
    h5::Id group = h5::Check(H5Gopen2(root, gname.c_str(), H5P_DEFAULT), twhere + ": cannot open group");
    TaskData td;
    td.ids = OpenDataset(group.get(), "input_ids", twhere);
    td.mask = OpenDataset(group.get(), "target_mask", twhere);
    td.lengths = OpenDataset(group.get(), "lengths", twhere);
    td.prompt = OpenDataset(group.get(), "prompt_lengths", twhere);
    td.label_index = OpenDataset(group.get(), "label_index", twhere);
    td.label_value = OpenDataset(group.get(), "label_value", twhere);
    const auto dims = h5::Dims(td.lengths.get(), twhere + ", lengths");
    if (dims.size() != 1) Fail("{}: dataset 'lengths' has rank {}, expected 1", twhere, dims.size());
    const hsize_t n = dims[0];
    const std::vector<hsize_t> want2 = {n, static_cast<hsize_t>(m.max_len)}, want1 = {n};
    const std::pair<const char*, const h5::Id*> checks[] = {{"input_ids", &td.ids},
                                                            {"target_mask", &td.mask},
                                                            {"prompt_lengths", &td.prompt},
                                                            {"label_index", &td.label_index},
                                                            {"label_value", &td.label_value}};
    for (const auto& [name, ds] : checks) {
      const auto d = h5::Dims(ds->get(), twhere + ", " + name);
      const auto& want =
          (std::string(name) == "input_ids" || std::string(name) == "target_mask") ? want2 : want1;
      if (d != want)
        throw Error(fmt::format("{}: dataset '{}' has shape [{}], expected [{}]", twhere, name,
                                fmt::join(d, ", "), fmt::join(want, ", ")),
                    kHintRebuild);
    }
    if (m.format_version >= 2)
      for (const auto& [name, ds] : checks)
        RequireChecksum(ds->get(), twhere + ", dataset '" + name + "'");
    if (m.format_version >= 2) RequireChecksum(td.lengths.get(), twhere + ", dataset 'lengths'");
    info.size = static_cast<int64_t>(n);
    sh.tasks.push_back(std::move(td));
  }
  return sh;
}

bool SameTaskList(const std::vector<TaskInfo>& a, const std::vector<TaskInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].metric != b[i].metric || a[i].candidates != b[i].candidates)
      return false;
  return true;
}

std::string TaskListText(const std::vector<TaskInfo>& tasks) {
  std::vector<std::string> parts;
  for (const auto& t : tasks)
    parts.push_back(fmt::format("{}({}, {} candidates)", t.name, t.metric, t.candidates.size()));
  return fmt::format("[{}]", fmt::join(parts, ", "));
}

// Consecutive runs of sorted unique rows: (start, count).
std::vector<std::pair<hsize_t, hsize_t>> Runs(const std::vector<int64_t>& sorted) {
  std::vector<std::pair<hsize_t, hsize_t>> runs;
  for (int64_t r : sorted) {
    if (!runs.empty() && runs.back().first + runs.back().second == static_cast<hsize_t>(r))
      ++runs.back().second;
    else
      runs.emplace_back(static_cast<hsize_t>(r), 1);
  }
  return runs;
}

// Reads rows `sorted` (unique, ascending) of a 1-D dataset (cols == 0) or the first `cols`
// columns of a 2-D one into `out` ([k] or [k, cols]). Caller holds the HDF5 lock.
void ReadRows(hid_t ds, hid_t mem_type, const std::vector<int64_t>& sorted, hsize_t cols, void* out,
              const std::string& what) {
  const int rank = cols == 0 ? 1 : 2;
  h5::Id fspace = h5::Check(H5Dget_space(ds), what);
  bool first = true;
  for (const auto& [start, count] : Runs(sorted)) {
    hsize_t st[2] = {start, 0};
    hsize_t ct[2] = {count, cols};
    h5::Check(
        H5Sselect_hyperslab(fspace.get(), first ? H5S_SELECT_SET : H5S_SELECT_OR, st, nullptr, ct, nullptr),
        what + ": bad row selection");
    first = false;
  }
  hsize_t mdims[2] = {static_cast<hsize_t>(sorted.size()), cols};
  h5::Id mspace = h5::Check(H5Screate_simple(rank, mdims, nullptr), what);
  if (H5Dread(ds, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0) {
    const std::string text = h5::Hdf5ErrorText();
    if (text.find("Fletcher32") != std::string::npos || text.find("checksum") != std::string::npos)
      throw Error(fmt::format("{}: checksum mismatch in the chunk(s) holding local rows {}..{}: the file is damaged",
                              what, sorted.front(), sorted.back()),
                  "`shard_data verify <dir>` lists every damaged chunk; re-create the shards (shard_data build) or "
                  "restore them from a copy");
    throw Error(what + ": read failed: " + text);
  }
}

}  // namespace

struct ShardSet::Impl {
  std::vector<Shard> shards;       // ordered by shard_index
  std::vector<std::string> files;  // shards[i].path
  std::vector<ShardMeta> metas;
  std::vector<TaskInfo> tasks;                // sizes summed
  std::vector<std::vector<int64_t>> offsets;  // [task][shard + 1]: first global row of each shard
  int max_len = 0;
  std::string hash, split;

  ~Impl() {
    h5::Lock lock(h5::Hdf5Mutex());
    shards.clear();  // releases the HDF5 ids under the lock
  }
};

bool ShardSet::HasSplit(const std::vector<std::string>& paths, const std::string& split) {
  try {
    return !ResolveFiles(paths, split).empty();
  } catch (const Error&) {
    return false;
  }
}

std::vector<std::string> ShardSet::ResolveFiles(const std::vector<std::string>& paths,
                                                const std::string& split) {
  if (paths.empty()) throw Error("no shard paths given", "set data.train / data.eval to a shard directory");
  std::vector<std::string> files;
  const std::string prefix = split.empty() ? "" : split + "-";
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(p)) {
        const std::string name = e.path().filename().string();
        if (e.is_regular_file() && name.size() > 3 && name.ends_with(".h5") && name.starts_with(prefix))
          found.push_back(e.path().string());
      }
      if (found.empty())
        throw Error(fmt::format("no shard files '{}*.h5' in directory '{}'", prefix, p),
                    "point the path at the output directory of `shard_data build`");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p)) {
      files.push_back(p);
    } else {
      throw Error("shard path '" + p + "' does not exist", "check the data paths / run shard_data build");
    }
  }
  return files;
}

ShardSet::ShardSet(const std::vector<std::string>& paths, const std::string& split,
                   const std::string& expected_tokenizer_hash, bool allow_partial)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  const auto files = ResolveFiles(paths, split);
  {
    h5::Lock lock(h5::Hdf5Mutex());
    h5::Hdf5Init();
    for (const auto& f : files) m.shards.push_back(OpenShard(f));
  }
  std::stable_sort(m.shards.begin(), m.shards.end(),
                   [](const Shard& a, const Shard& b) { return a.meta.shard_index < b.meta.shard_index; });
  const Shard& first = m.shards.front();
  const ShardMeta& f = first.meta;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const Shard& s = m.shards[i];
    const ShardMeta& g = s.meta;
    auto disagree = [&](const char* field, const std::string& a, const std::string& b) {
      throw Error(fmt::format("shard '{}' disagrees with shard '{}' on {}: {} vs {}", s.path, first.path,
                              field, b, a),
                  "all shards of a split must come from one `shard_data build` run");
    };
    if (!split.empty() && g.split != split)
      throw Error(fmt::format("shard '{}' belongs to split '{}', expected '{}'", s.path, g.split, split),
                  "pass the shards of the right split");
    if (g.split != f.split) disagree("split", f.split, g.split);
    if (g.max_len != f.max_len) disagree("max_len", std::to_string(f.max_len), std::to_string(g.max_len));
    if (g.tokenizer_hash != f.tokenizer_hash) disagree("tokenizer_hash", f.tokenizer_hash, g.tokenizer_hash);
    if (g.vocab_size != f.vocab_size) disagree("vocab_size", std::to_string(f.vocab_size), std::to_string(g.vocab_size));
    if (!SameTaskList(g.tasks, f.tasks))
      disagree("the task list", TaskListText(f.tasks), TaskListText(g.tasks));
    if (g.num_shards != f.num_shards)
      disagree("num_shards", std::to_string(f.num_shards), std::to_string(g.num_shards));
    if (i > 0 && g.shard_index == m.shards[i - 1].meta.shard_index)
      Fail("shards '{}' and '{}' both have shard_index {} (the same shard given twice?)",
           m.shards[i - 1].path, s.path, g.shard_index);
  }
  if (!allow_partial && static_cast<int>(m.shards.size()) != f.num_shards) {
    std::vector<int> have;
    for (const auto& s : m.shards) have.push_back(s.meta.shard_index);
    throw Error(
        fmt::format("split '{}' has {} shards but only {} were found (indices found: {}); missing shard "
                    "file(s) near '{}'",
                    f.split, f.num_shards, m.shards.size(), fmt::join(have, ","), first.path),
        "pass all shards of the split (or their directory); re-run shard_data build if some were lost");
  }
  if (!expected_tokenizer_hash.empty() && f.tokenizer_hash != expected_tokenizer_hash)
    throw Error(fmt::format("shards '{}'... were made with another tokenizer: their tokenizer_hash is {}, "
                            "the tokenizer given has hash {}",
                            first.path, f.tokenizer_hash, expected_tokenizer_hash),
                "use the tokenizer the shards were built with, or rebuild the shards with this one");
  m.max_len = f.max_len;
  m.hash = f.tokenizer_hash;
  m.split = f.split;
  m.tasks = f.tasks;
  m.offsets.assign(m.tasks.size(), std::vector<int64_t>{0});
  for (auto& t : m.tasks) t.size = 0;
  for (const auto& s : m.shards) {
    m.files.push_back(s.path);
    m.metas.push_back(s.meta);
    for (size_t t = 0; t < m.tasks.size(); ++t) {
      m.tasks[t].size += s.meta.tasks[t].size;
      m.offsets[t].push_back(m.tasks[t].size);
    }
  }
}

ShardSet::~ShardSet() = default;

const std::vector<TaskInfo>& ShardSet::tasks() const { return impl_->tasks; }
int ShardSet::max_len() const { return impl_->max_len; }
const std::string& ShardSet::tokenizer_hash() const { return impl_->hash; }
const std::string& ShardSet::split() const { return impl_->split; }
const std::vector<std::string>& ShardSet::files() const { return impl_->files; }
const std::vector<ShardMeta>& ShardSet::shards() const { return impl_->metas; }

int ShardSet::TaskId(const std::string& name) const {
  std::vector<std::string> names;
  for (size_t i = 0; i < impl_->tasks.size(); ++i) {
    if (impl_->tasks[i].name == name) return static_cast<int>(i);
    names.push_back(impl_->tasks[i].name);
  }
  throw Error(fmt::format("unknown task '{}'; the shards have tasks: {}", name, fmt::join(names, ", ")),
              "check the task names in the config against `shard_data inspect`");
}

MicroBatch ShardSet::Read(int task, const std::vector<int64_t>& rows, int bucket, int32_t pad_id) const {
  const Impl& m = *impl_;
  if (task < 0 || task >= num_tasks()) Fail("ShardSet::Read: task id {} outside [0, {})", task, num_tasks());
  if (bucket < 1) Fail("ShardSet::Read: bucket {} must be >= 1", bucket);
  const TaskInfo& info = m.tasks[static_cast<size_t>(task)];
  const auto& off = m.offsets[static_cast<size_t>(task)];
  const size_t B = rows.size();

  MicroBatch mb;
  mb.task = task;
  mb.batch_size = static_cast<int>(B);
  mb.rows = rows;
  mb.lengths.resize(B);
  mb.prompt_lengths.resize(B);
  mb.label_index.resize(B);
  mb.label_value.resize(B);
  if (B == 0) return mb;

  // Group the requested rows by shard: per shard, the sorted unique local rows and, for each
  // requested row, its index among them.
  struct Group {
    std::vector<int64_t> uniq;                     // [k] sorted unique local rows
    std::vector<std::pair<size_t, int64_t>> refs;  // (output index, local row)
  };
  std::vector<Group> groups(m.shards.size());
  for (size_t i = 0; i < B; ++i) {
    const int64_t r = rows[i];
    if (r < 0 || r >= info.size)
      Fail("task '{}': row {} outside [0, {}) (split '{}')", info.name, r, info.size, m.split);
    const size_t s = static_cast<size_t>(std::upper_bound(off.begin(), off.end(), r) - off.begin() - 1);
    groups[s].refs.emplace_back(i, r - off[s]);
    groups[s].uniq.push_back(r - off[s]);
  }
  for (auto& g : groups) {
    std::sort(g.uniq.begin(), g.uniq.end());
    g.uniq.erase(std::unique(g.uniq.begin(), g.uniq.end()), g.uniq.end());
  }
  auto index_in = [](const Group& g, int64_t local) {
    return static_cast<size_t>(std::lower_bound(g.uniq.begin(), g.uniq.end(), local) - g.uniq.begin());
  };

  h5::Lock lock(h5::Hdf5Mutex());
  // Pass 1: per-row scalars, validated.
  int32_t longest = 0;
  for (size_t s = 0; s < groups.size(); ++s) {
    const Group& g = groups[s];
    if (g.uniq.empty()) continue;
    const TaskData& td = m.shards[s].tasks[static_cast<size_t>(task)];
    const std::string what = fmt::format("shard '{}', task '{}'", m.shards[s].path, info.name);
    const size_t k = g.uniq.size();
    std::vector<int32_t> len(k), prompt(k), li(k);
    std::vector<float> lv(k);
    ReadRows(td.lengths.get(), H5T_NATIVE_INT32, g.uniq, 0, len.data(), what + ", lengths");
    ReadRows(td.prompt.get(), H5T_NATIVE_INT32, g.uniq, 0, prompt.data(), what + ", prompt_lengths");
    ReadRows(td.label_index.get(), H5T_NATIVE_INT32, g.uniq, 0, li.data(), what + ", label_index");
    ReadRows(td.label_value.get(), H5T_NATIVE_FLOAT, g.uniq, 0, lv.data(), what + ", label_value");
    for (size_t j = 0; j < k; ++j) {
      const int64_t global = off[s] + g.uniq[j];
      if (len[j] < 2 || len[j] > m.max_len)
        Fail(
            "{}, row {} (local row {}): stored length {} outside [2, max_len={}] (hint: the shard is "
            "corrupt; {})",
            what, global, g.uniq[j], len[j], m.max_len, kHintRebuild);
      if (prompt[j] < 1 || prompt[j] >= len[j])
        Fail("{}, row {} (local row {}): stored prompt length {} outside [1, {}) (hint: {})", what, global,
             g.uniq[j], prompt[j], len[j], kHintRebuild);
      if (li[j] < -1 || li[j] >= static_cast<int32_t>(info.candidates.size()))
        Fail("{}, row {} (local row {}): stored label_index {} outside [-1, {}) (hint: {})", what, global,
             g.uniq[j], li[j], info.candidates.size(), kHintRebuild);
      longest = std::max(longest, len[j]);
    }
    for (const auto& [out, local] : g.refs) {
      const size_t j = index_in(g, local);
      mb.lengths[out] = len[j];
      mb.prompt_lengths[out] = prompt[j];
      mb.label_index[out] = li[j];
      mb.label_value[out] = lv[j];
    }
  }
  const int L = std::min(m.max_len, (longest + bucket - 1) / bucket * bucket);
  const int64_t vocab = m.metas.front().vocab_size;  // the same in every shard (checked at open)
  const int32_t bos = m.metas.front().bos_id, eos = m.metas.front().eos_id;
  mb.seq_len = L;
  mb.input_ids.assign(B * static_cast<size_t>(L), pad_id);
  mb.target_mask.assign(B * static_cast<size_t>(L), 0);

  // Pass 2: the first L columns of input_ids / target_mask of the same rows.
  for (size_t s = 0; s < groups.size(); ++s) {
    const Group& g = groups[s];
    if (g.uniq.empty()) continue;
    const TaskData& td = m.shards[s].tasks[static_cast<size_t>(task)];
    const std::string what = fmt::format("shard '{}', task '{}'", m.shards[s].path, info.name);
    const bool structured = m.shards[s].meta.format_version >= 2;
    const size_t k = g.uniq.size();
    std::vector<int32_t> ids(k * static_cast<size_t>(L));   // [k, L]
    std::vector<uint8_t> mask(k * static_cast<size_t>(L));  // [k, L]
    ReadRows(td.ids.get(), H5T_NATIVE_INT32, g.uniq, static_cast<hsize_t>(L), ids.data(),
             what + ", input_ids");
    ReadRows(td.mask.get(), H5T_NATIVE_UINT8, g.uniq, static_cast<hsize_t>(L), mask.data(),
             what + ", target_mask");
    for (const auto& [out, local] : g.refs) {
      const size_t j = index_in(g, local);
      const int32_t n = mb.lengths[out];
      const int32_t* src_ids = ids.data() + j * static_cast<size_t>(L);
      const uint8_t* src_mask = mask.data() + j * static_cast<size_t>(L);
      for (int32_t c = 0; c < n; ++c) {
        // ids past the vocabulary would index outside the embedding (or, split over tp ranks,
        // match no rank's slice and train on a zero vector without a word)
        if (src_ids[c] < 0 || src_ids[c] >= vocab)
          Fail("{}, row {} (local row {}), column {}: token id {} outside [0, vocab_size={}) (hint: the shard is "
               "corrupt; {})",
               what, off[s] + local, local, c, src_ids[c], vocab, kHintRebuild);
        if (src_mask[c] > 1)
          Fail("{}, row {} (local row {}), column {}: bad stored target_mask value {} (hint: {})", what,
               off[s] + local, local, c, src_mask[c], kHintRebuild);
      }
      // format version 2 rows are BOS + prompt + target + EOS with the mask 1 exactly from the
      // prompt's end (the writer enforces it): this also catches a chunk zeroed together with its
      // Fletcher-32 checksum, which the checksum alone cannot see
      if (structured) {
        const int32_t p = mb.prompt_lengths[out];
        if (src_ids[0] != bos || src_ids[n - 1] != eos)
          Fail("{}, row {} (local row {}): input_ids must start with bos_id {} and end with eos_id {}, not {} ... {} "
               "(hint: the shard is damaged; `shard_data verify`; {})",
               what, off[s] + local, local, bos, eos, src_ids[0], src_ids[n - 1], kHintRebuild);
        for (int32_t c = 0; c < n; ++c)
          if (src_mask[c] != (c >= p ? 1 : 0))
            Fail("{}, row {} (local row {}), column {}: target_mask {} but the prompt is {} tokens long (hint: the "
                 "shard is damaged; `shard_data verify`; {})",
                 what, off[s] + local, local, c, src_mask[c], p, kHintRebuild);
      }
      std::copy(src_ids, src_ids + n,
                mb.input_ids.begin() + static_cast<std::ptrdiff_t>(out * static_cast<size_t>(L)));
      std::copy(src_mask, src_mask + n,
                mb.target_mask.begin() + static_cast<std::ptrdiff_t>(out * static_cast<size_t>(L)));
    }
  }
  return mb;
}

std::vector<std::string> ShardSet::Verify(int64_t* rows_checked) const {
  const Impl& m = *impl_;
  std::vector<std::string> problems;
  const int64_t chunk = ShardChunkRows(m.max_len);
  int64_t rows = 0;
  for (int t = 0; t < num_tasks(); ++t) {
    const auto& off = m.offsets[static_cast<size_t>(t)];
    for (size_t s = 0; s + 1 < off.size(); ++s) {
      // chunk by chunk of the shard's local rows, so each failure names one chunk of each dataset
      for (int64_t begin = off[s]; begin < off[s + 1]; begin += chunk) {
        std::vector<int64_t> ids;
        for (int64_t r = begin; r < std::min(off[s + 1], begin + chunk); ++r) ids.push_back(r);
        try {
          Read(t, ids, 1, m.metas.front().pad_id);
        } catch (const Error& e) {
          problems.push_back(e.what());
        }
        rows += static_cast<int64_t>(ids.size());
      }
    }
  }
  if (rows_checked) *rows_checked = rows;
  return problems;
}

}  // namespace more
