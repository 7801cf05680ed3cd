"""Write the validated study config as JSON: the analysis and setup commands read this one file."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake
with open(snakemake.output[0], "w") as fh:  # noqa: F821
    json.dump(snakemake.params.config, fh, indent=2, sort_keys=True)  # noqa: F821
