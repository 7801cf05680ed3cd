# One table rule and one rule per figure for each research question of evotrace.analysis.RQS; an RQ
# listed in OWN_RULES (common.smk) brings its own rules file instead. The loop variables reach the
# commands through params: a shell string is formatted when the job runs, after the loop has ended.


for _rq in [rq for rq in RQS if rq not in OWN_RULES]:

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

    for _figure in figures_of(_rq):

        rule:
            name:
                f"{_rq}_{_figure}"
            input:
                candidates=f"{RESULTS}/traces/candidates.parquet",
                tables=getattr(rules, f"{_rq}_tables").output,
                config=f"{RESULTS}/config.json",
            output:
                html=figure_file(_rq, _figure, "html"),
                pdf=figure_file(_rq, _figure, "pdf"),
                png=figure_file(_rq, _figure, "png"),
            log:
                f"{LOGS}/figures/{_rq}_{_figure}.log",
            localrule: True
            conda:
                ENV
            params:
                rq=_rq,
                figure=_figure,
                traces=lambda wc, input: os.path.dirname(input.candidates),
                tables=lambda wc, input: os.path.dirname(input.tables[0]),
            shell:
                "evotrace figure --rq {params.rq} --name {params.figure} --tables-dir {params.tables}"
                " --config-json {input.config} --traces-dir {params.traces}"
                " --out {output.html} {output.pdf} {output.png} > {log} 2>&1"
