#!/bin/bash -l
# properties = {properties}
# Snakemake job script template for Polaris (str.format: braces are doubled). PBS starts jobs in
# $HOME with a bare login environment: load the conda module and the project venv, then run the rule.
cd "$PBS_O_WORKDIR" || exit 1
export TMPDIR=/tmp
if command -v module >/dev/null 2>&1; then
    module use /soft/modulefiles
    module load conda
    conda activate base
fi
EVOTRACE_VENV="${{EVOTRACE_VENV:-$PBS_O_WORKDIR/.venv}}"
if [ -f "$EVOTRACE_VENV/bin/activate" ]; then
    source "$EVOTRACE_VENV/bin/activate"
fi
# node-local SSD, wiped when the job ends: a cache only, never a place for declared outputs
if [ -d /local/scratch ] && [ -w /local/scratch ]; then
    export EVOTRACE_NODE_CACHE="/local/scratch/evotrace-$PBS_JOBID"
fi
echo "evotrace: PBS job $PBS_JOBID on $(hostname), $(wc -l < "${{PBS_NODEFILE:-/dev/null}}") node(s)"
{exec_job}
