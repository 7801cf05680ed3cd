#!/bin/bash
# The profile's executor commands: pbs-submit, pbs-status, pbs-cancel and pbs-sidecar are links to this
# file; the link's name picks `python -m evotrace.pbs submit|status|cancel|sidecar`. The plugin runs
# cancel and sidecar without a shell, so each has to be one executable. Snakemake turns a profile value
# naming a file of the profile folder into its path, so they work from any working directory.
cmd=${0##*/}
exec "${EVOTRACE_PYTHON:-python3}" -m evotrace.pbs "${cmd#pbs-}" "$@"
