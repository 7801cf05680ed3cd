#!/bin/bash
# The Polaris `{resources.mpi}`: rules run `{resources.mpi} -n {resources.tasks} CMD...`, and the GPU
# wrapper has to come after `-n N`, right before CMD. Cray MPICH's mpiexec spans the PBS allocation.
# EVOTRACE_MPIEXEC_OPTS replaces the placement options (ranks per node must match the `ppn` resource).
set -euo pipefail
if [ "$#" -lt 3 ] || { [ "$1" != "-n" ] && [ "$1" != "-np" ]; }; then
    echo "usage: $0 -n RANKS CMD [ARGS...]" >&2
    exit 2
fi
ranks=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2086  # the options are a word list
exec mpiexec -n "$ranks" ${EVOTRACE_MPIEXEC_OPTS---ppn 4 --depth 8 --cpu-bind depth} "$here/gpu_affinity.sh" "$@"
