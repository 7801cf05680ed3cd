rule rq5_tables:
    input:
        candidates=f"{RESULTS}/traces/candidates.parquet",
        tensor_reads=f"{RESULTS}/traces/tensor_reads.parquet",
        config=f"{RESULTS}/config.json",
    output:
        expand(f"{RESULTS}/tables/rq5/{{table}}.csv", table=tables_of("rq5")),
    log:
        f"{LOGS}/rq5_tables.log",
    benchmark:
        f"{BENCH}/rq5_tables.tsv"
    localrule: True
    conda:
        ENV
    params:
        traces=lambda wc, input: os.path.dirname(input.candidates),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "evotrace analyze --rq rq5 --traces-dir {params.traces} --config-json {input.config}"
        " --out-dir {params.out_dir} > {log} 2>&1"


for _figure in figures_of("rq5"):

    rule:
        name:
            f"rq5_{_figure}"
        input:
            candidates=f"{RESULTS}/traces/candidates.parquet",
            tables=rules.rq5_tables.output,
            config=f"{RESULTS}/config.json",
        output:
            html=figure_file("rq5", _figure, "html"),
            pdf=figure_file("rq5", _figure, "pdf"),
            png=figure_file("rq5", _figure, "png"),
        log:
            f"{LOGS}/figures/rq5_{_figure}.log",
        localrule: True
        conda:
            ENV
        params:
            figure=_figure,
            traces=lambda wc, input: os.path.dirname(input.candidates),
            tables=lambda wc, input: os.path.dirname(input.tables[0]),
            finding=finding_of("rq5", _figure),
        shell:
            "evotrace figure --rq rq5 --name {params.figure} --tables-dir {params.tables}"
            " --config-json {input.config} --traces-dir {params.traces}"
            " --out {output.html} {output.pdf} {output.png} > {log} 2>&1"
