# Two rules for each research question of evotrace.analysis.RQS: its tables, and its figures. A figure
# file is a target of its own (`snakemake results/<study>/figures/rq3/tiers.png`); the rule that makes it
# draws all figures of its question in one process, through one headless Chromium. The loop variables
# reach the commands through params: a shell string is formatted when the job runs, after the loop ended.


for _rq in RQS:

    rule:
        name:
            f"{_rq}_tables"
        input:
            candidates=f"{RESULTS}/traces/candidates.parquet",
            tensor_reads=f"{RESULTS}/traces/tensor_reads.parquet",
            config=f"{RESULTS}/config.json",
        output:
            expand(f"{RESULTS}/tables/{_rq}/{{table}}.csv", table=tables_of(_rq)),
        log:
            f"{LOGS}/{_rq}_tables.log",
        benchmark:
            f"{BENCH}/{_rq}_tables.tsv"
        localrule: True
        conda:
            ENV
        params:
            rq=_rq,
            traces=lambda wc, input: os.path.dirname(input.candidates),
            out_dir=lambda wc, output: os.path.dirname(output[0]),
        shell:
            "evotrace analyze --rq {params.rq} --traces-dir {params.traces} --config-json {input.config}"
            " --out-dir {params.out_dir} > {log} 2>&1"

    rule:
        name:
            f"{_rq}_figures"
        input:
            candidates=f"{RESULTS}/traces/candidates.parquet",
            tables=getattr(rules, f"{_rq}_tables").output,
            config=f"{RESULTS}/config.json",
        output:
            [
                figure_file(_rq, figure, ext)
                for figure in figures_of(_rq)
                for ext in FIGURE_FORMATS
            ],
        log:
            f"{LOGS}/figures/{_rq}.log",
        benchmark:
            f"{BENCH}/{_rq}_figures.tsv"
        localrule: True
        conda:
            ENV
        params:
            rq=_rq,
            traces=lambda wc, input: os.path.dirname(input.candidates),
            tables=lambda wc, input: os.path.dirname(input.tables[0]),
            out_dir=lambda wc, output: os.path.dirname(output[0]),
            findings=findings_of(_rq),
        shell:
            "evotrace figure --rq {params.rq} --tables-dir {params.tables} --config-json {input.config}"
            " --traces-dir {params.traces} --out-dir {params.out_dir} > {log} 2>&1"
