rule summary:
    input:
        candidates=f"{RESULTS}/traces/candidates.parquet",
        tensor_reads=f"{RESULTS}/traces/tensor_reads.parquet",
    output:
        report(
            f"{RESULTS}/tables/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/summary.log",
    localrule: True
    conda:
        ENV
    params:
        traces=lambda wc, input: os.path.dirname(input.candidates),
    shell:
        "evotrace summary --traces-dir {params.traces} --out {output} > {log} 2>&1"
