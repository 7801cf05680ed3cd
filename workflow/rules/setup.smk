from evotrace.data import DOWNLOADS

DOWNLOADED = {"cifar10", "candle-attn"}


def checksum_of(wildcards):
    """The published md5, or the sha256 a user pinned in the dataset's config entry."""
    pinned = [d["sha256"] for d in config["datasets"].values() if d["source"] == wildcards.source and "sha256" in d]
    if pinned:
        return f"--sha256 {pinned[0]}"
    md5 = DOWNLOADS[wildcards.source]["md5"]
    return f"--md5 {md5}" if md5 else ""


rule download:
    output:
        "resources/downloads/{source}/{file}",
    log:
        "logs/downloads/{source}/{file}.log",
    params:
        url=lambda wc: DOWNLOADS[wc.source]["url"],
        checksum=checksum_of,
    wildcard_constraints:
        source="|".join(DOWNLOADED),
    resources:
        runtime=120,
    shell:
        "(curl --fail --location --retry 3 --output {output}.part {params.url}"
        " && mv {output}.part {output}"
        " && if [ -n '{params.checksum}' ]; then evotrace data verify --input {output} {params.checksum};"
        " else echo 'no published checksum: pin one with datasets.<name>.sha256'; fi) > {log} 2>&1"


def download_of(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source in DOWNLOADED:
        return f"resources/downloads/{source}/{DOWNLOADS[source]['file']}"
    return []


def prepare_options(wildcards):
    ds = config["datasets"][wildcards.dataset]
    flags = [
        f"--source {ds['source']}",
        f"--validation-fraction {ds.get('validation_fraction', 0.2)}",
        f"--seed {ds.get('seed', 0)}",
    ]
    for key in ("input_blocks", "max_train", "max_val"):
        if key in ds:
            flags.append(f"--{key.replace('_', '-')} {ds[key]}")
    return " ".join(flags)


rule prepare_dataset:
    input:
        download_of,
    output:
        "resources/data/{dataset}.npz",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    params:
        options=prepare_options,
        input=lambda wc, input: f"--input {input[0]}" if input else "",
    shell:
        "evotrace data prepare {params.options} {params.input} --out {output} > {log} 2>&1"


rule study_config:
    output:
        f"{RESULTS}/config.json",
    params:
        config=config,
    run:
        with open(output[0], "w") as fh:
            json.dump(params.config, fh, indent=2, sort_keys=True)


rule setup_run:
    input:
        config=f"{RESULTS}/config.json",
        data=dataset_of,
    output:
        f"{RESULTS}/{{run}}/spec.json",
    log:
        f"{LOGS}/{{run}}/setup.log",
    shell:
        "evotrace setup --config-json {input.config} --run {wildcards.run}"
        " --data {input.data} --out {output} > {log} 2>&1"
