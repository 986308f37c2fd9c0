// more_export: adapters of a checkpoint -> export directory, and per-task merged models.
//   more_export --checkpoint RUN/checkpoints/step-00000200 --out EXPORT [--merge task1,task2|all]
// The base model comes from the checkpoint's resolved config (model.path) unless --model is given.
#include <iostream>
#include <sstream>

#include "more/ckpt/checkpoint.h"
#include "more/ckpt/export.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/model/llama.h"

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int argc, char** argv) {
    std::string ckpt, out, merge, model_dir;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw more::Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--checkpoint") ckpt = next();
      else if (a == "--out") out = next();
      else if (a == "--merge") merge = next();
      else if (a == "--model") model_dir = next();
      else if (a == "--help" || a == "-h") {
        std::cout << "usage: more_export --checkpoint DIR --out DIR [--merge TASKS|all] [--model HF_DIR]\n";
        return 0;
      } else throw more::Error("unexpected argument '" + a + "'", "see more_export --help");
    }
    if (ckpt.empty() || out.empty()) throw more::Error("--checkpoint and --out are required");
    const auto exported = more::ExportCheckpoint(ckpt, out, model_dir);
    spdlog::info("exported the adapters of {} to {}", ckpt, out);
    if (!merge.empty()) {
      std::vector<std::string> which;
      if (merge == "all") which = exported.tasks;
      else {
        std::stringstream ss(merge);
        std::string t;
        while (std::getline(ss, t, ',')) which.push_back(t);
      }
      for (const auto& t : which) {
        auto dir = more::MergeTask(out, exported.model_path, t, out + "/merged/" + t);
        spdlog::info("merged model for task '{}' written to {}", t, dir);
      }
    }
    return 0;
  });
}
