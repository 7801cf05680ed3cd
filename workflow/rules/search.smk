rule search:
    """Algorithm 1 on W MPI worker ranks plus one master rank (a simulated run: W virtual workers in
    one process, no mpiexec). The run directory also holds the
    model repository and the journal that lets a killed search resume: neither is a declared output,
    so a failed job never deletes them. A search killed by walltime or preemption is retried and
    resumes from the journal. Snakemake deletes a rule's log before each attempt: the attempts write
    search.log.1, .2, ... (kept), and search.log links to the latest.
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
        tasks=lambda wc: 1 if simulated(wc) else search_workers(wc) + 1,
        mpi_slots=lambda wc: 0 if simulated(wc) else 1,  # a simulated search is one process
        runtime=120,
    params:
        launch=search_launcher,
        out_dir=lambda wc, output: os.path.dirname(output.candidates),
        cache_dir=lambda wc, resources: (
            f"--cache-dir {resources.cache_dir}" if resources.get("cache_dir") else ""
        ),
    shell:
        "n=1; while [ -e {log}.$n ]; do n=$((n + 1)); done; ln -sfn $(basename {log}).$n {log};"
        " {params.launch} evotrace search --spec {input.spec}"
        " --out-dir {params.out_dir} {params.cache_dir} > {log}.$n 2>&1"
