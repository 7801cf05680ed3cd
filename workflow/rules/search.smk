rule search:
    """Algorithm 1 on W MPI worker ranks plus one master rank. The run directory also holds the
    model repository and the journal that lets a killed search resume: neither is a declared output,
    so a failed job never deletes them. A search killed by walltime or preemption is retried and
    resumes from the journal; each attempt's log is kept (search.log.1, .2, ... hold the earlier ones).
    """
    input:
        spec=f"{RESULTS}/{{run}}/spec.json",
        data=dataset_of,
    output:
        candidates=f"{RESULTS}/{{run}}/candidates.parquet",
        tensor_reads=f"{RESULTS}/{{run}}/tensor_reads.parquet",
    log:
        f"{LOGS}/{{run}}/search.log",
    benchmark:
        f"{BENCH}/{{run}}/search.tsv"
    retries: 2
    conda:
        ENV
    threads: 1
    resources:
        tasks=lambda wc: search_workers(wc) + 1,
        mpi_slots=1,
        runtime=120,
    params:
        out_dir=lambda wc, output: os.path.dirname(output.candidates),
        cache_dir=lambda wc, resources: (
            f"--cache-dir {resources.cache_dir}" if resources.get("cache_dir") else ""
        ),
    shell:
        "n=1; while [ -e {log}.$n ]; do n=$((n + 1)); done; if [ -s {log} ]; then mv {log} {log}.$n; fi;"
        " {resources.mpi} -n {resources.tasks} evotrace search --spec {input.spec}"
        " --out-dir {params.out_dir} {params.cache_dir} > {log} 2>&1"
