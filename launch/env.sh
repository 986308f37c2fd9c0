# Sourced by the launch scripts: one intra-op thread pool per rank sized to the cores it owns,
# OpenBLAS threads kept out of the way, and Open MPI allowed to run as root / oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1
