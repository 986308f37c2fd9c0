// more_train: MoRE / LoRA multi-task fine-tuning. Launch with mpirun for tp x pp x dp ranks.
//   more_train --config run.toml [--section.key=value ...]
//   more_train --help
#include <cstring>
#include <iostream>

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/dist/device.h"
#include "more/dist/process_grid.h"
#include "more/model/hf_config.h"
#include "more/train/trainer.h"

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int argc, char** argv) {
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
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    auto model = more::LoadLlamaConfig(cfg.model.path);
    cfg.ValidateAgainstModel(model, world);
    more::Layout layout{static_cast<int>(cfg.parallel.tp), static_cast<int>(cfg.parallel.pp),
                        static_cast<int>(cfg.dp_size(world))};
    // GPU: pick this rank's device first, then the NCCL communicators are created on it
    const int gpu = more::SelectDevice(cfg.model.device, MPI_COMM_WORLD);
    more::ProcessGrid grid(MPI_COMM_WORLD, layout, gpu >= 0 ? more::CommBackend::kNccl : more::CommBackend::kMpi);
    more::Trainer trainer(cfg, grid);
    trainer.Run();
    return 0;
  });
}
