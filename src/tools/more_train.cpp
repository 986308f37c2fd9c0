// more_train: MoRE / LoRA multi-task fine-tuning. Launch with mpirun for tp x pp x dp ranks.
//   more_train --config run.toml [--section.key=value ...]
//   more_train --help
#include <cstring>
#include <iostream>

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/dist/device.h"
#include "more/dist/path_check.h"
#include "more/dist/process_grid.h"
#include "more/model/hf_config.h"
#include "more/train/stop_signal.h"
#include "more/train/trainer.h"

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int argc, char** argv) {
    more::InstallStopSignalHandlers();  // before the start-up, which can take minutes (stop_signal.h)
    more::AnnounceStopSignalsReady(MPI_COMM_WORLD);  // for launch/slurm.sbatch: MORE_SIGNAL_READY_FILE
    std::string config_path;
    std::vector<std::string> overrides;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << "usage: more_train --config FILE.toml [--section.key=value ...]\n\noptions:\n"
                  << more::ConfigHelp();
        return 0;
      }
      if (a == "--config" && i + 1 < argc) config_path = argv[++i];
      else if (a.rfind("--config=", 0) == 0) config_path = a.substr(9);
      else if (a.rfind("--", 0) == 0) overrides.push_back(a.substr(2));
      else throw more::Error("unexpected argument '" + a + "'", "see more_train --help");
    }
    auto cfg = more::LoadConfig(config_path, overrides);
    cfg.Validate();
    more::LogPlacement(MPI_COMM_WORLD);
    more::CheckSharedPaths(cfg, MPI_COMM_WORLD);
    const auto grid = more::MakeRunGrid(cfg, more::LoadLlamaConfig(cfg.model.path), MPI_COMM_WORLD);
    more::Trainer trainer(cfg, *grid);
    trainer.Run();
    return 0;
  });
}
