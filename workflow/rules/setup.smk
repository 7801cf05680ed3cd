rule download:
    output:
        "resources/downloads/{source}/{file}",
    log:
        "logs/downloads/{source}/{file}.log",
    wildcard_constraints:
        source="|".join(DOWNLOADS),
    localrule: True
    conda:
        ENV
    resources:
        runtime=120,
    params:
        url=lambda wc: DOWNLOADS[wc.source]["url"],
        checksum=checksum_of,
    shell:
        "(curl --fail --location --retry 3 --output {output}.part {params.url}"
        " && mv {output}.part {output}"
        " && if [ -n '{params.checksum}' ]; then evotrace data verify --input {output} {params.checksum};"
        " else echo 'no published checksum: pin one with datasets.<name>.sha256'; fi) > {log} 2>&1"


rule prepare_dataset:
    input:
        download_of,
    output:
        "resources/data/{dataset}.npz",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    conda:
        ENV
    params:
        options=prepare_options,
        input=lambda wc, input: f"--input {input[0]}" if input else "",
    shell:
        "evotrace data prepare {params.options} {params.input} --out {output} > {log} 2>&1"


rule study_config:
    output:
        f"{RESULTS}/config.json",
    log:
        f"{LOGS}/study_config.log",
    localrule: True
    conda:
        ENV
    params:
        config=config,
    script:
        "../scripts/study_config.py"


# A run's spec depends on its own settings only (params.settings): editing an analysis option rewrites
# config.json, which must not start the searches again (ancient: its time stamp is not compared).
rule setup_run:
    input:
        config=ancient(f"{RESULTS}/config.json"),
        data=dataset_of,
    output:
        f"{RESULTS}/{{run}}/spec.json",
    log:
        f"{LOGS}/{{run}}/setup.log",
    localrule: True
    conda:
        ENV
    params:
        settings=run_settings,
    shell:
        "evotrace setup --config-json {input.config} --run {wildcards.run}"
        " --data {input.data} --out {output} > {log} 2>&1"
