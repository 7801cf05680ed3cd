#!/bin/bash
# One A100 per MPI rank: `mpiexec ... gpu_affinity.sh CMD`. Reverse order because --depth 8 binds
# local rank 0 to cores 0-7, the NUMA domain of GPU 3 (ALCF's set_affinity_gpu_polaris.sh).
local_rank=${PMI_LOCAL_RANK:-${MPI_LOCALRANKID:-${OMPI_COMM_WORLD_LOCAL_RANK:-0}}}
num_gpus=${EVOTRACE_GPUS_PER_NODE:-4}
export CUDA_VISIBLE_DEVICES=$(( num_gpus - 1 - local_rank % num_gpus ))
exec "$@"
