// Start-up check that every rank sees the same files: cluster nodes share a file system, and a
// node that does not (a missing mount, a path only one node has) would otherwise fail alone deep
// in loading, or - for the checkpoint directory - start fresh while the others resume.
#pragma once
#include <string>
#include <vector>

#include <mpi.h>

#include "more/config/config.h"

namespace more {

// What one rank sees at `path`: "missing", "unreadable (<reason>)", "a file of N bytes",
// "a directory of N entries, M bytes". With `latest` (a checkpoint directory): what its `latest`
// file names, "no latest checkpoint" when the directory has none.
std::string DescribePath(const std::string& path, bool latest = false);

// The paths a run reads, with the config key that names them: model.path, data.train and
// data.eval (each entry), the tokenizer, adapter.init_from, transfer.from, and the checkpoint
// directory (compared by its `latest`, only when ckpt.resume is on).
struct CheckedPath {
  std::string key, path;
  bool latest = false;
};
std::vector<CheckedPath> RunPaths(const Config& cfg);

// Collective over `world`: every rank describes every path of RunPaths(cfg) and the ranks compare.
// Where they differ, every rank throws CollectiveError (core/main_guard.h) naming, per path, the
// ranks and hosts of each view, e.g.
//   path check: the ranks do not see the same model.path '/models/x': ranks 0, 1 on node1:
//   a directory of 5 entries, 1031 bytes; ranks 2, 3 on node2: missing
// before anything is written.
void CheckSharedPaths(const Config& cfg, MPI_Comm world);

}  // namespace more
