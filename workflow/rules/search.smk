rule search:
    """Algorithm 1 on W MPI worker ranks plus one master rank (a simulated run: W virtual workers in
    one process, no mpiexec). The run directory also holds the
    model repository and the journal that lets a killed search resume: neither is a declared output,
    so a failed job never deletes them."""
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
    conda:
        ENV
    threads: 1
    resources:
        tasks=lambda wc: 1 if simulated(wc) else search_workers(wc) + 1,
        mpi_slots=1,
        runtime=120,
    params:
        launch=search_launcher,
        out_dir=lambda wc, output: os.path.dirname(output.candidates),
        cache_dir=lambda wc, resources: (
            f"--cache-dir {resources.cache_dir}" if resources.get("cache_dir") else ""
        ),
    shell:
        "{params.launch} evotrace search --spec {input.spec}"
        " --out-dir {params.out_dir} {params.cache_dir} > {log} 2>&1"
