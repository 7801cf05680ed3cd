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
    # compute nodes reach the internet only through the ALCF proxy (dataset downloads)
    export http_proxy=http://proxy.alcf.anl.gov:3128 https_proxy=http://proxy.alcf.anl.gov:3128
    export no_proxy=admin,polaris-adminvm-01,localhost,*.cm.polaris.alcf.anl.gov,polaris-*,*.polaris.alcf.anl.gov,*.alcf.anl.gov
fi
EVOTRACE_VENV="${{EVOTRACE_VENV:-$PBS_O_WORKDIR/.venv}}"
if [ -f "$EVOTRACE_VENV/bin/activate" ]; then
    source "$EVOTRACE_VENV/bin/activate"
fi
echo "evotrace: PBS job $PBS_JOBID on $(hostname), $(wc -l < "${{PBS_NODEFILE:-/dev/null}}") node(s)"
{exec_job}
