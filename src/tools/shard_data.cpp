// shard_data: text tasks -> SentencePiece tokenizer and HDF5 shards (see docs/data.md).
//   shard_data tokenizer --manifest M --out-prefix P --vocab-size N
//   shard_data build --manifest M [--tokenizer T.model] --out DIR --max-len L
//                    [--rows-per-shard R] [--overlong truncate|skip|error] [--splits train,eval]
//   shard_data inspect DIR_or_FILE
//   shard_data verify DIR_or_FILE
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "more/core/main_guard.h"
#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/data/manifest.h"
#include "more/data/shard_io.h"
#include "more/data/tokenizer.h"

namespace fs = std::filesystem;
using namespace more;

namespace {

constexpr const char* kUsage = R"(usage:
  shard_data tokenizer --manifest M --out-prefix P --vocab-size N
      train a SentencePiece BPE tokenizer (LLaMA ids: unk 0, bos 1, eos 2) on all inputs and
      targets of the manifest's train files; writes P.model and P.vocab
  shard_data build --manifest M [--tokenizer T.model] --out DIR --max-len L
                   [--rows-per-shard R=10000] [--overlong truncate|skip|error=truncate]
                   [--splits train,eval]
      pack every task of each split into DIR/<split>-00000-of-0000K.h5 ...; a text manifest
      needs --tokenizer (SentencePiece); a pre-tokenized manifest (made by
      launch/hf_tokenize.py from a model's tokenizer.json, or by hand) carries its tokenizer
  shard_data inspect DIR_or_FILE
      print the metadata and per-task sizes of shards
  shard_data verify DIR_or_FILE
      read every chunk of every dataset: checks each chunk's checksum (format version 2) and
      every stored value; lists each damaged chunk and exits 1 if there is one
)";

// --key value pairs after the subcommand.
std::map<std::string, std::string> ParseFlags(int argc, char** argv, int first,
                                              const std::vector<std::string>& known) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (!a.starts_with("--")) throw Error("unexpected argument '" + a + "'", "see shard_data --help");
    a = a.substr(2);
    std::string value;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc) throw Error("flag --" + a + " needs a value");
      value = argv[++i];
    }
    if (std::find(known.begin(), known.end(), a) == known.end())
      throw Error("unknown flag --" + a, fmt::format("this subcommand takes --{}", fmt::join(known, ", --")));
    flags[a] = value;
  }
  return flags;
}

const std::string& Need(const std::map<std::string, std::string>& f, const std::string& key) {
  const auto it = f.find(key);
  if (it == f.end()) throw Error("missing required flag --" + key, "see shard_data --help");
  return it->second;
}

int ToInt(const std::string& s, const std::string& flag) {
  try {
    size_t pos = 0;
    const int v = std::stoi(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("--" + flag + " expects an integer, got '" + s + "'");
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t c = s.find(',', start);
    const std::string part = s.substr(start, c == std::string::npos ? std::string::npos : c - start);
    if (!part.empty()) out.push_back(part);
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

int CmdTokenizer(const std::map<std::string, std::string>& f) {
  const Manifest manifest = LoadManifest(Need(f, "manifest"));
  const std::string prefix = Need(f, "out-prefix");
  const int vocab = ToInt(Need(f, "vocab-size"), "vocab-size");
  if (const fs::path parent = fs::path(prefix).parent_path(); !parent.empty()) fs::create_directories(parent);
  const std::string corpus = prefix + ".corpus.txt";
  int64_t lines = 0;
  {
    std::ofstream out(corpus);
    if (!out) throw Error("cannot write '" + corpus + "'");
    auto put = [&](std::string s) {
      std::replace(s.begin(), s.end(), '\n', ' ');
      out << s << '\n';
      ++lines;
    };
    for (const auto& t : manifest.tasks) {
      const auto it = t.files.find("train");
      if (it == t.files.end())
        throw Error("manifest '" + manifest.path + "': task '" + t.info.name + "' has no \"train\" file");
      for (const auto& ex : ReadTaskFile(it->second)) {
        put(ex.input);
        put(ex.target);
      }
    }
  }
  try {
    TrainTokenizer({corpus}, prefix, vocab);
  } catch (...) {
    fs::remove(corpus);
    throw;
  }
  fs::remove(corpus);
  const Tokenizer tok(prefix + ".model");
  fmt::print("tokenizer {}.model: {} pieces from {} lines, hash {}\n", prefix, tok.vocab_size(), lines,
             tok.hash());
  return 0;
}

// Deletes shards of `split` left in `dir` by an earlier run (their count may differ).
void RemoveOldShards(const std::string& dir, const std::string& split) {
  auto is_shard_name = [&](const std::string& name) {  // <split>-DDDDD-of-DDDDD.h5[.tmp]
    if (!name.starts_with(split + "-")) return false;
    std::string rest = name.substr(split.size() + 1);
    if (rest.ends_with(".tmp")) rest.resize(rest.size() - 4);
    if (rest.size() != 17 || rest.substr(5, 4) != "-of-" || !rest.ends_with(".h5")) return false;
    return std::all_of(rest.begin(), rest.begin() + 5, ::isdigit) &&
           std::all_of(rest.begin() + 9, rest.begin() + 14, ::isdigit);
  };
  std::vector<fs::path> old;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_shard_name(e.path().filename().string())) old.push_back(e.path());
  for (const auto& p : old) fs::remove(p);
  if (!old.empty()) fmt::print("  replaced {} old '{}' shard file(s) in {}\n", old.size(), split, dir);
}

// What the rows are made with: a SentencePiece model (text manifest) or the tokenizer block of a
// pre-tokenized manifest (its ids were made by launch/hf_tokenize.py or the user's own code).
struct RowSource {
  std::unique_ptr<Tokenizer> sp;          // text manifest
  std::optional<TokenizerBlock> block;    // pre-tokenized manifest
  std::string hash;
  int32_t vocab_size = 0, bos_id = 0, eos_id = 0, pad_id = 0;
};

RowSource OpenRowSource(const Manifest& manifest, const std::map<std::string, std::string>& f) {
  RowSource src;
  if (manifest.tokenizer) {
    if (f.contains("tokenizer"))
      throw Error(fmt::format("manifest '{}' is pre-tokenized (its \"tokenizer\" block names '{}'): --tokenizer "
                              "does not apply", manifest.path, manifest.tokenizer->file),
                  "drop --tokenizer; the rows already hold token ids");
    src.block = manifest.tokenizer;
    src.hash = HashFileHex(src.block->file);
    src.vocab_size = src.block->vocab_size;
    src.bos_id = src.block->bos_id, src.eos_id = src.block->eos_id, src.pad_id = src.block->pad_id;
    return src;
  }
  if (!f.contains("tokenizer"))
    throw Error("missing required flag --tokenizer (manifest '" + manifest.path + "' holds text)",
                "pass the SentencePiece .model; for a model that ships tokenizer.json, make a pre-tokenized "
                "manifest with launch/hf_tokenize.py (docs/data.md)");
  src.sp = std::make_unique<Tokenizer>(f.at("tokenizer"));
  src.hash = src.sp->hash();
  src.vocab_size = src.sp->vocab_size();
  src.bos_id = src.sp->bos_id(), src.eos_id = src.sp->eos_id(), src.pad_id = src.sp->pad_id();
  return src;
}

// Packs one task file of either kind into rows (file order); std::nullopt rows were skipped.
std::vector<Sample> PackTaskFile(const RowSource& src, const TaskInfo& info, const std::string& file, int max_len,
                                 OverlongPolicy policy, PackStats* stats) {
  std::vector<Sample> rows;
  auto add = [&](std::optional<Sample> s, const TextExample& labels_of, const std::string& where) {
    if (!s) return;
    const ExampleLabels labels = LabelsOf(info, labels_of, where);
    s->label_index = labels.index;
    s->label_value = labels.value;
    rows.push_back(std::move(*s));
  };
  if (src.sp) {
    const auto examples = ReadTaskFile(file);
    if (examples.empty()) throw Error(fmt::format("task '{}': file '{}' has no rows", info.name, file));
    for (const auto& ex : examples) {
      const std::string where = fmt::format("{}:{}", file, ex.line);
      std::optional<Sample> s;
      try {
        s = PackSample(*src.sp, ex.input, ex.target, max_len, policy, stats);
      } catch (const Error& e) {
        throw Error(where + ": " + e.what());
      }
      add(std::move(s), ex, where);
    }
    return rows;
  }
  const auto examples = ReadTokenFile(file, *src.block);
  if (examples.empty()) throw Error(fmt::format("task '{}': file '{}' has no rows", info.name, file));
  for (const auto& ex : examples) {
    const std::string where = fmt::format("{}:{}", file, ex.labels.line);
    if (!info.candidates.empty() && !ex.labels.label_str)
      throw Error(fmt::format("{}: task '{}' has candidates but the row has no 'label'", where, info.name),
                  "give the row's candidate as \"label\"");
    // input_ids = BOS + prompt, target_ids = target + EOS: the packing rule adds BOS and EOS itself
    const std::vector<int32_t> prompt(ex.input_ids.begin() + 1, ex.input_ids.end());
    const std::vector<int32_t> target(ex.target_ids.begin(), ex.target_ids.end() - 1);
    std::optional<Sample> s;
    try {
      s = PackTokens(prompt, target, src.bos_id, src.eos_id, max_len, policy, stats);
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    add(std::move(s), ex.labels, where);
  }
  return rows;
}

int CmdBuild(const std::map<std::string, std::string>& f) {
  const Manifest manifest = LoadManifest(Need(f, "manifest"));
  const RowSource src = OpenRowSource(manifest, f);
  const std::string out_dir = Need(f, "out");
  const int max_len = ToInt(Need(f, "max-len"), "max-len");
  const int rows_per_shard =
      f.contains("rows-per-shard") ? ToInt(f.at("rows-per-shard"), "rows-per-shard") : 10000;
  const OverlongPolicy policy = ParseOverlongPolicy(f.contains("overlong") ? f.at("overlong") : "truncate");
  const auto splits = SplitComma(f.contains("splits") ? f.at("splits") : "train,eval");
  if (max_len < 2) throw Error("--max-len must be >= 2");
  if (rows_per_shard < 1) throw Error("--rows-per-shard must be >= 1");
  if (splits.empty()) throw Error("--splits is empty");
  fs::create_directories(out_dir);
  const auto infos = manifest.task_infos();

  for (const auto& split : splits) {
    // Pack every task of the split (rows stay in file order).
    std::vector<std::vector<Sample>> rows(manifest.tasks.size());
    fmt::print("split '{}':\n", split);
    fmt::print("  {:<16} {:>7} {:>9} {:>7} {:>10} {:>8} {:>7}\n", "task", "rows", "truncated", "skipped",
               "target>max", "mean_len", "max_len");
    for (size_t t = 0; t < manifest.tasks.size(); ++t) {
      const ManifestTask& mt = manifest.tasks[t];
      const auto it = mt.files.find(split);
      if (it == mt.files.end())
        throw Error(
            fmt::format("manifest '{}': task '{}' has no \"{}\" file", manifest.path, mt.info.name, split),
            "every task needs a file for every split in --splits");
      PackStats stats;
      rows[t] = PackTaskFile(src, mt.info, it->second, max_len, policy, &stats);
      int32_t longest = 0;
      for (const auto& s : rows[t]) longest = std::max(longest, static_cast<int32_t>(s.ids.size()));
      if (rows[t].empty())
        throw Error(fmt::format("task '{}' split '{}': every row was skipped as longer than --max-len {}",
                                mt.info.name, split, max_len),
                    "raise --max-len or use --overlong truncate");
      fmt::print("  {:<16} {:>7} {:>9} {:>7} {:>10} {:>8.1f} {:>7}\n", mt.info.name, rows[t].size(),
                 stats.truncated, stats.skipped, stats.target_too_long,
                 static_cast<double>(stats.total_tokens) / static_cast<double>(rows[t].size()), longest);
      if (stats.target_too_long > 0)
        fmt::print(stderr,
                   "warning: task '{}' split '{}': {} rows skipped: the target alone exceeds max_len {}\n",
                   mt.info.name, split, stats.target_too_long, max_len);
    }
    int64_t total = 0;
    for (const auto& r : rows) total += static_cast<int64_t>(r.size());
    const int num_shards =
        static_cast<int>(std::max<int64_t>(1, (total + rows_per_shard - 1) / rows_per_shard));
    RemoveOldShards(out_dir, split);
    for (int k = 0; k < num_shards; ++k) {
      ShardMeta meta;
      meta.tokenizer_hash = src.hash;
      meta.max_len = max_len;
      meta.split = split;
      meta.shard_index = k;
      meta.num_shards = num_shards;
      meta.tasks = infos;  // a pre-tokenized manifest's candidate_ids are in infos already
      meta.vocab_size = src.vocab_size;
      meta.bos_id = src.bos_id;
      meta.eos_id = src.eos_id;
      meta.pad_id = src.pad_id;
      if (src.sp)
        for (auto& info : meta.tasks) {
          info.candidate_ids.clear();
          for (const auto& c : info.candidates) info.candidate_ids.push_back(src.sp->Encode(c));
        }
      const std::string path = (fs::path(out_dir) / ShardFileName(split, k, num_shards)).string();
      ShardWriter writer(path, meta);
      for (size_t t = 0; t < rows.size(); ++t) {
        const auto [begin, end] = ShardRowRange(static_cast<int64_t>(rows[t].size()), k, num_shards);
        for (int64_t r = begin; r < end; ++r)
          writer.Append(static_cast<int>(t), rows[t][static_cast<size_t>(r)]);
      }
      writer.Close();
    }
    fmt::print("  {} rows in {} shard(s) {}/{}-*.h5\n", total, num_shards, out_dir, split);
  }
  return 0;
}

void PrintShardSet(const ShardSet& set) {
  fmt::print("split '{}': {} shard(s), format_version {}, max_len {}, tokenizer_hash {}\n", set.split(),
             set.files().size(), set.shards().at(0).format_version, set.max_len(), set.tokenizer_hash());
  for (const auto& f : set.files()) fmt::print("  {}\n", f);
  fmt::print("  {:<4} {:<16} {:<9} {:>8}  {:<24} {}\n", "id", "task", "metric", "rows", "rows per shard",
             "candidates");
  for (size_t t = 0; t < set.tasks().size(); ++t) {
    const TaskInfo& info = set.tasks()[t];
    std::vector<int64_t> per;
    for (const auto& s : set.shards()) per.push_back(s.tasks[t].size);
    fmt::print("  {:<4} {:<16} {:<9} {:>8}  {:<24} [{}]\n", t, info.name, info.metric, info.size,
               fmt::format("{}", fmt::join(per, ",")), fmt::join(info.candidates, ", "));
  }
}

std::vector<std::string> SplitsIn(const std::string& dir) {  // the "<split>-" prefixes present, sorted
  std::vector<std::string> splits;
  for (const auto& file : ShardSet::ResolveFiles({dir}, "")) {
    const std::string name = fs::path(file).filename().string();
    const std::string split = name.substr(0, name.find('-'));
    if (std::find(splits.begin(), splits.end(), split) == splits.end()) splits.push_back(split);
  }
  std::sort(splits.begin(), splits.end());
  return splits;
}

int CmdInspect(const std::string& path) {
  if (!fs::exists(path)) throw Error("'" + path + "' does not exist");
  if (!fs::is_directory(path)) {
    const ShardSet one({path}, "", "", /*allow_partial=*/true);
    fmt::print("file {}: shard {} of {}\n", path, one.shards()[0].shard_index, one.shards()[0].num_shards);
    PrintShardSet(one);
    return 0;
  }
  for (const auto& s : SplitsIn(path)) PrintShardSet(ShardSet({path}, s));
  return 0;
}

int CmdVerify(const std::string& path) {
  if (!fs::exists(path)) throw Error("'" + path + "' does not exist");
  std::vector<std::unique_ptr<ShardSet>> sets;
  if (fs::is_directory(path))
    for (const auto& s : SplitsIn(path)) sets.push_back(std::make_unique<ShardSet>(std::vector<std::string>{path}, s));
  else
    sets.push_back(std::make_unique<ShardSet>(std::vector<std::string>{path}, "", "", /*allow_partial=*/true));
  size_t bad = 0;
  for (const auto& set : sets) {
    int64_t rows = 0;
    const auto problems = set->Verify(&rows);
    const bool checksummed = set->shards().at(0).format_version >= 2;
    for (const auto& p : problems) fmt::print(stderr, "DAMAGED {}\n", p);
    fmt::print("split '{}': {} shard(s), {} rows of {} task(s) read: {}{}\n", set->split(), set->files().size(), rows,
               set->num_tasks(), problems.empty() ? "ok" : fmt::format("{} damaged chunk(s)", problems.size()),
               checksummed ? "" : " (format version 1: no checksums, only the stored values were checked)");
    bad += problems.size();
  }
  if (bad > 0) {
    fmt::print(stderr, "error: {} damaged chunk(s) in '{}' (hint: re-create the shards with shard_data build, or "
               "restore them from a copy)\n", bad, path);
    return 1;
  }
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  const std::string cmd = argv[1];
  if (cmd == "tokenizer")
    return CmdTokenizer(ParseFlags(argc, argv, 2, {"manifest", "out-prefix", "vocab-size"}));
  if (cmd == "build")
    return CmdBuild(ParseFlags(
        argc, argv, 2, {"manifest", "tokenizer", "out", "max-len", "rows-per-shard", "overlong", "splits"}));
  if (cmd == "inspect") {
    if (argc != 3) throw Error("inspect takes one path: shard_data inspect DIR_or_FILE");
    return CmdInspect(argv[2]);
  }
  if (cmd == "verify") {
    if (argc != 3) throw Error("verify takes one path: shard_data verify DIR_or_FILE");
    return CmdVerify(argv[2]);
  }
  throw Error("unknown subcommand '" + cmd + "'", "use tokenizer, build, inspect or verify (see --help)");
}

}  // namespace

int main(int argc, char** argv) { return more::RunTool(argc, argv, Main); }
