rule consolidate:
    input:
        candidates=expand(f"{RESULTS}/{{run}}/candidates.parquet", run=RUNS),
        tensor_reads=expand(f"{RESULTS}/{{run}}/tensor_reads.parquet", run=RUNS),
    output:
        candidates=f"{RESULTS}/traces/candidates.parquet",
        tensor_reads=f"{RESULTS}/traces/tensor_reads.parquet",
    log:
        f"{LOGS}/consolidate.log",
    benchmark:
        f"{BENCH}/consolidate.tsv"
    localrule: True
    conda:
        ENV
    params:
        out_dir=lambda wc, output: os.path.dirname(output.candidates),
    shell:
        "evotrace consolidate --inputs {input.candidates} --tensor-reads {input.tensor_reads}"
        " --out-dir {params.out_dir} > {log} 2>&1"
