# evotrace: traced parallel regularized-evolution NAS with transfer learning, and the analyses of its
# characterization study. One file per stage under workflow/rules; see docs/architecture.md.
from snakemake.utils import min_version

min_version("9.0")


# the embedded default study, unless --configfile names another (a second config is not merged into it)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/setup.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/traces.smk"
include: "workflow/rules/rq.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        final_output(),
    localrule: True
