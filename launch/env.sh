# Sourced by the launch scripts: Open MPI may run as root / oversubscribe; ranks are not
# bound to one core each (a rank with train.threads=N needs N cores: with binding, mpirun's
# default for <= 2 ranks is one core per rank, and the threads would share it); and libtorch
# and OpenBLAS share one OpenMP thread pool.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_hwloc_base_binding_policy=none
# Debian's libopenblas-dev selects the pthread OpenBLAS; its threads and libtorch's OpenMP
# threads then contend for the cores (2-3x slower steps measured, docs/benchmarks.md). The
# OpenMP build of the same library (package libopenblas0-openmp) uses libtorch's own pool.
if [ -f /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
  export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export OPENBLAS_NUM_THREADS=1  # until the trainer sets the per-rank count (SetBlasThreads)
