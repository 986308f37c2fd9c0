// Stop signals: SIGTERM (pre-emption, scontrol requeue) and SIGUSR1 (Slurm's --signal warning
// before a time limit) set a process-wide flag that the training loop reads at each step boundary
// (Trainer::StopRequested): save a checkpoint, exit 0. Torch-free.
#pragma once
#include <mpi.h>

namespace more {

// Installs the handlers. more_train does this first thing after MPI_Init, so a signal during
// start-up (model loading can take minutes) is not fatal either: the run stops after its first
// step. Trainer::Run installs them too.
void InstallStopSignalHandlers();

// The last stop signal this process received (SIGTERM or SIGUSR1), 0 if none.
int StopSignalReceived();

// For a launcher that must not pass a signal to ranks that cannot handle it yet (a signal that
// reaches a rank before InstallStopSignalHandlers kills it): once every rank of `world` has
// installed its handlers (a barrier over `world`, so call it after InstallStopSignalHandlers on
// every rank), the first rank of each node creates the empty file named by the environment
// variable MORE_SIGNAL_READY_FILE (nothing when it is unset or empty) and removes it again when
// the process exits normally. launch/slurm.sbatch holds an early USR1 until this file exists on
// its node (docs/cluster.md). A file that cannot be created is a warning naming it, not an error.
void AnnounceStopSignalsReady(MPI_Comm world);

}  // namespace more
