#include "more/dist/path_check.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/core/strings.h"
#include "more/dist/device.h"

namespace fs = std::filesystem;

namespace more {

std::string DescribePath(const std::string& path, bool latest) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return fmt::format("unreadable ({})", ec.message());
    return latest ? "no checkpoint directory" : "missing";
  }
  if (::access(path.c_str(), R_OK) != 0) return fmt::format("unreadable ({})", std::strerror(errno));
  if (latest) {
    std::ifstream in(path + "/latest");
    std::string name;
    if (!in || !std::getline(in, name)) return "no latest checkpoint";
    return "latest checkpoint '" + name + "'";
  }
  if (!fs::is_directory(st)) return fmt::format("a file of {} bytes", fs::file_size(path, ec));
  int64_t entries = 0;
  uintmax_t bytes = 0;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    ++entries;
    if (it->is_regular_file(ec)) bytes += it->file_size(ec);
  }
  if (ec) return fmt::format("unreadable ({})", ec.message());
  return fmt::format("a directory of {} entries, {} bytes", entries, bytes);
}

std::vector<CheckedPath> RunPaths(const Config& cfg) {
  std::vector<CheckedPath> out;
  if (!cfg.model.path.empty()) out.push_back({"model.path", cfg.model.path});
  for (const auto& p : SplitList(cfg.data.train)) out.push_back({"data.train", p});
  for (const auto& p : SplitList(cfg.data.eval)) out.push_back({"data.eval", p});
  if (!cfg.data.tokenizer.empty()) out.push_back({"data.tokenizer", cfg.data.tokenizer});
  if (!cfg.adapter.init_from.empty()) out.push_back({"adapter.init_from", cfg.adapter.init_from});
  if (!cfg.transfer.from.empty()) out.push_back({"transfer.from", cfg.transfer.from});
  if (cfg.ckpt.resume) out.push_back({"checkpoint directory", cfg.checkpoint_dir(), true});
  return out;
}

namespace {

std::vector<std::string> AllGather(const std::string& mine, MPI_Comm world, int size) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size), offs(size);
  MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, world);
  int total = 0;
  for (int r = 0; r < size; ++r) offs[r] = total, total += lens[r];
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, world);
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.push_back(all.substr(offs[r], lens[r]));
  return out;
}

}  // namespace

void CheckSharedPaths(const Config& cfg, MPI_Comm world) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return;
  int size = 1;
  MPI_Comm_size(world, &size);
  if (size == 1) return;
  const auto paths = RunPaths(cfg);
  std::string mine;
  for (const auto& p : paths) mine += DescribePath(p.path, p.latest) + '\n';
  const auto views = AllGather(mine, world, size);
  const auto hosts = RankHosts(world);
  std::vector<std::string> problems;
  for (size_t i = 0; i < paths.size(); ++i) {
    // view of path i -> the ranks that have it (ordered by first rank)
    std::vector<std::pair<std::string, std::vector<int>>> seen;
    for (int r = 0; r < size; ++r) {
      const auto lines = SplitList(views[r], '\n');
      const std::string v = i < lines.size() ? lines[i] : "?";
      auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == v; });
      if (it == seen.end()) seen.push_back({v, {r}});
      else it->second.push_back(r);
    }
    if (seen.size() == 1) continue;
    std::string text;
    for (const auto& [view, ranks] : seen) {
      std::map<std::string, std::vector<int>> by_host;  // host -> ranks, in host order
      for (int r : ranks) by_host[hosts[r]].push_back(r);
      for (const auto& [host, rs] : by_host)
        text += fmt::format("{}{} {} on {}: {}", text.empty() ? "" : "; ", rs.size() == 1 ? "rank" : "ranks",
                            fmt::join(rs, ", "), host, view);
    }
    problems.push_back(fmt::format("the ranks do not see the same {} '{}': {}", paths[i].key, paths[i].path, text));
  }
  if (problems.empty()) return;
  throw CollectiveError("path check: " + fmt::format("{}", fmt::join(problems, "; and ")),
                        "every node must see the same files at the same paths (a shared file system, or copies "
                        "in the same place); nothing was written");
}

}  // namespace more
