rule rq4_tables:
    input:
        candidates=f"{RESULTS}/traces/candidates.parquet",
        tensor_reads=f"{RESULTS}/traces/tensor_reads.parquet",
        config=f"{RESULTS}/config.json",
    output:
        expand(f"{RESULTS}/tables/rq4/{{table}}.csv", table=tables_of("rq4")),
    log:
        f"{LOGS}/rq4_tables.log",
    benchmark:
        f"{BENCH}/rq4_tables.tsv"
    localrule: True
    conda:
        ENV
    params:
        traces=lambda wc, input: os.path.dirname(input.candidates),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "evotrace analyze --rq rq4 --traces-dir {params.traces} --config-json {input.config}"
        " --out-dir {params.out_dir} > {log} 2>&1"


for _figure in figures_of("rq4"):

    rule:
        name:
            f"rq4_{_figure}"
        input:
            candidates=f"{RESULTS}/traces/candidates.parquet",
            tables=rules.rq4_tables.output,
            config=f"{RESULTS}/config.json",
        output:
            html=figure_file("rq4", _figure, "html"),
            pdf=figure_file("rq4", _figure, "pdf"),
            png=figure_file("rq4", _figure, "png"),
        log:
            f"{LOGS}/figures/rq4_{_figure}.log",
        localrule: True
        conda:
            ENV
        params:
            figure=_figure,
            traces=lambda wc, input: os.path.dirname(input.candidates),
            tables=lambda wc, input: os.path.dirname(input.tables[0]),
        shell:
            "evotrace figure --rq rq4 --name {params.figure} --tables-dir {params.tables}"
            " --config-json {input.config} --traces-dir {params.traces}"
            " --out {output.html} {output.pdf} {output.png} > {log} 2>&1"
