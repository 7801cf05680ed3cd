"""evotrace.pbs against a stand-in PBS (tests/fake_pbs) that really runs the job scripts, then a real
Snakemake run through the cluster-generic executor with the Polaris profile's commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evotrace import pbs

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_pbs"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Environment in which `qsub`, `qstat`, `qdel` are the stand-ins, with their state in tmp_path."""
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PBS_STATE", str(tmp_path / "pbs_state"))
    monkeypatch.delenv("FAKE_PBS_QSTAT", raising=False)
    monkeypatch.delenv("EVOTRACE_ACCOUNT", raising=False)
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


def cli(*args, env=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evotrace.pbs", *args], capture_output=True, text=True, env=env, check=check
    )


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"job{len(list(tmp_path.glob('job*.sh')))}.sh"
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def submit(path: Path, walltime: str = "00:01:00") -> str:
    out = cli("submit", "--account", "proj", "--walltime", walltime, "--min-walltime", "0",
              "--log-dir", "logs", "--name", "t", str(path)).stdout
    assert len(out.splitlines()) == 1, out
    return out.strip()


def status(jobid: str, **extra) -> str:
    proc = cli("status", jobid, env={**os.environ, **extra})
    assert proc.returncode == 0
    return proc.stdout.strip()


def settle(jobid: str, timeout: float = 20.0) -> str:
    deadline = time.time() + timeout
    while (word := status(jobid)) == "running" and time.time() < deadline:
        time.sleep(0.2)
    return word


def record(jobid: str) -> dict:
    return json.loads((Path(os.environ["FAKE_PBS_STATE"]) / f"{jobid.split('.')[0]}.json").read_text())


def test_walltime_format():
    assert pbs.walltime(30) == "00:30:00"
    assert pbs.walltime("90.5") == "01:30:30"
    assert pbs.walltime(24 * 60) == "24:00:00"
    assert pbs.walltime("2:00:00") == "2:00:00"
    assert pbs.node_count(1, 9, 4) == 3 and pbs.node_count(2, 1, 4) == 2


def test_qsub_command(env):
    args = ["submit", "--dry-run", "--tasks", "9", "--walltime", "45", "--name", "smk-search", "job.sh"]
    line = cli(args[0], "--account", "$EVOTRACE_ACCOUNT", *args[1:],
               env={**env, "EVOTRACE_ACCOUNT": "MyProj"}).stdout
    for part in ("qsub -A MyProj -q debug-scaling", "select=3:system=polaris", "walltime=00:45:00",
                 "filesystems=home:eagle", "place=scatter", "-N smk-search", "-j oe", "job.sh"):
        assert part in line, (part, line)
    assert "-r y" not in line
    missing = cli(args[0], "--account", "$EVOTRACE_ACCOUNT", *args[1:], check=False)
    assert missing.returncode != 0 and "EVOTRACE_ACCOUNT" in missing.stderr
    short = cli(args[0], "--account", "p", "--walltime", "1", "--nodes", "12", "job.sh", "--dry-run").stdout
    assert "walltime=00:05:00" in short and "-q prod" in short  # Polaris's 5-minute minimum
    long = cli(args[0], "--account", "p", "--walltime", "600", "--nodes", "2", "job.sh", "--dry-run").stdout
    assert "-q preemptable" in long and "-r y" in long  # rerun after preemption
    refused = cli(args[0], "--account", "p", "--queue", "prod", "--nodes", "3", "job.sh", "--dry-run", check=False)
    assert refused.returncode != 0
    assert "3 node(s)" in refused.stderr and "queue prod" in refused.stderr and "10-496 nodes" in refused.stderr


def test_queue_choice_follows_polaris():
    table = pbs.load_queues()
    assert table.source.startswith("https://docs.alcf.anl.gov/polaris") and table.date
    choose = lambda nodes, minutes, queue=None: pbs.plan(nodes, minutes, queue, "search", table)[0]  # noqa: E731
    assert choose(1, 30) == "debug" and choose(2, 60) == "debug"
    assert choose(3, 60) == "debug-scaling"  # the default study's search: ceil(9 / 4) nodes
    assert choose(3, 120) == "preemptable" and choose(10, 61) == "prod"  # prod routes 10 nodes to small
    assert choose(30, 300) == "prod" and choose(4, 5000) == "capacity"
    assert pbs.plan(1, 1, None, "x", table) == ("debug", 5.0)
    with pytest.raises(pbs.QueueError, match="no Polaris queue holds it"):
        choose(12, 200)  # small takes 3 h at most, preemptable 10 nodes
    with pytest.raises(pbs.QueueError) as err:
        choose(3, 60, "debug")
    for part in ("rule search", "3 node(s)", "walltime 01:00:00", "queue debug", "1-2 nodes", "01:00:00", table.date):
        assert part in str(err.value), part
    with pytest.raises(pbs.QueueError, match="queue prod"):
        choose(30, 400, "prod")  # medium holds 25-99 nodes for 6 h at most
    assert choose(30, 300, "prod") == "prod" and choose(12, 60, "small") == "small"
    assert choose(3, 60, "R1234567") == "R1234567"  # a reservation: PBS decides
    assert pbs.rerunnable("preemptable", table) and not pbs.rerunnable("debug", table)


def test_fake_qsub_refuses_like_polaris(env, tmp_path):
    job = script(tmp_path, "exit 0")

    def qsub(queue, nodes, walltime="00:30:00"):
        return subprocess.run(["qsub", "-A", "p", "-q", queue, "-l", f"select={nodes}:system=polaris", "-l",
                               f"walltime={walltime}", "-l", "filesystems=home", str(job)],
                              capture_output=True, text=True)

    assert "exceeds queue" in qsub("debug", 3).stderr and qsub("debug", 3).returncode != 0
    assert qsub("debug", 1, "02:00:00").returncode != 0
    assert qsub("nosuch", 1).returncode != 0
    routed = qsub("prod", 12).stdout.strip()
    assert settle(routed) == "success" and record(routed)["queue"] == "small"
    dropped = qsub("prod", 3)  # prod accepts, its routing refuses: the id is later unknown
    assert dropped.returncode == 0
    proc = cli("status", dropped.stdout.strip())
    assert proc.stdout.strip() == "failed" and "unknown to PBS" in proc.stderr


def test_qsub_retried_when_the_server_is_down(env, tmp_path):
    run_env = {**env, "FAKE_PBS_QSUB": "down:2", "EVOTRACE_PBS_RETRY_DELAY": "0.05"}
    out = cli("submit", "--account", "p", "--log-dir", "logs", str(script(tmp_path, "exit 0")), env=run_env)
    jobid = out.stdout.strip()
    assert settle(jobid) == "success" and out.stderr.count("retrying") == 2
    calls = [c.split()[1] for c in (tmp_path / "pbs_state" / "calls.log").read_text().splitlines()]
    assert calls.count("qsub") == 3
    refused = cli("submit", "--account", "p", "--queue", "debug", "--nodes", "2", "--walltime", "90",
                  str(script(tmp_path, "exit 0")), env=run_env, check=False)
    assert refused.returncode != 0 and "do not fit queue debug" in refused.stderr  # never reaches qsub


def test_status_reads_the_sidecar_board(env, tmp_path):
    ok = submit(script(tmp_path, "exit 0"))
    settle(ok)
    board = pbs.Board(tmp_path / "board")
    board.jobs.mkdir(parents=True)
    board.write({ok: ["failed", "killed by walltime"]})
    calls = tmp_path / "pbs_state" / "calls.log"
    before = calls.read_text().count(" qstat ")
    read = cli("status", ok, env={**env, pbs.SIDECAR_VAR: str(board.root)})
    assert read.stdout.strip() == "failed" and "killed by walltime" in read.stderr  # the board, not qstat
    assert calls.read_text().count(" qstat ") == before and (board.jobs / ok).exists()
    stale = json.loads(board.status_file.read_text())
    board.status_file.write_text(json.dumps({**stale, "time": stale["time"] - 3600}))  # the sidecar died
    assert cli("status", ok, env={**env, pbs.SIDECAR_VAR: str(board.root)}).stdout.strip() == "success"
    assert calls.read_text().count(" qstat ") == before + 1


def test_qdel_retried_when_the_server_is_down(env, tmp_path):
    held = submit(script(tmp_path, "sleep 60"))
    wait_state(held, "R")
    out = cli("cancel", "--wait", held, env={**env, "FAKE_PBS_QDEL": "down:2", "EVOTRACE_PBS_RETRY_DELAY": "0.05"})
    assert out.returncode == 0 and out.stderr.count("cannot connect") == 2
    assert settle(held) == "failed" and record(held)["Exit_status"] == 271


def test_preemption(env, tmp_path):
    runs = tmp_path / "runs"
    body = f"echo x >> {runs}; [ $(wc -l < {runs}) -ge 2 ] && exit 0; sleep 30"
    rerun = cli("submit", "--account", "p", "--queue", "preemptable", "--log-dir", "logs",
                str(script(tmp_path, body))).stdout.strip()
    assert "-r" in record(rerun)["argv"] and record(rerun)["rerun"] == "y"
    wait_state(rerun, "R")
    while not runs.exists():
        time.sleep(0.1)
    subprocess.run(["preempt", rerun], check=True)
    assert settle(rerun) == "success" and record(rerun)["run_count"] == 2  # requeued, ran again
    lost = submit(script(tmp_path, "sleep 30"))
    wait_state(lost, "R")
    subprocess.run(["preempt", lost], check=True)
    assert settle(lost) == "failed" and record(lost)["Exit_status"] == 271


def wait_state(jobid: str, state: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while record(jobid)["job_state"] != state:
        assert time.time() < deadline, record(jobid)
        time.sleep(0.1)


def test_success_failure_running(env, tmp_path):
    gate = tmp_path / "gate"
    ok = submit(script(tmp_path, "echo ok $PBS_JOBID; exit 0"))
    bad = submit(script(tmp_path, "exit 1"))
    held = submit(script(tmp_path, f"while [ ! -e {gate} ]; do sleep 0.1; done"))
    assert ok.endswith(".polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov")
    assert settle(ok) == "success"
    assert settle(bad) == "failed"
    time.sleep(0.5)
    assert status(held) == "running"
    gate.touch()
    assert settle(held) == "success"
    assert "ok " + ok in "".join(p.read_text() for p in (tmp_path / "logs").glob("t.*.log"))


def test_walltime_kill_and_qdel(env, tmp_path):
    slow = script(tmp_path, "sleep 30")
    killed = submit(slow, walltime="00:00:01")
    deleted = submit(slow)
    time.sleep(0.5)
    assert status(deleted) == "running"
    assert cli("cancel", deleted).returncode == 0
    assert settle(killed) == "failed"
    assert settle(deleted) == "failed"
    assert record(killed)["Exit_status"] == -29  # JOB_EXEC_KILL_WALLTIME
    assert record(deleted)["Exit_status"] == 271  # 256 + SIGTERM


def test_scheduler_trouble(env, tmp_path):
    assert status("4242.polaris-pbs-01") == "failed"  # Unknown Job Id
    ok = submit(script(tmp_path, "exit 0"))
    assert settle(ok) == "success"
    assert status(ok, PATH="/nonexistent") == "running"
    assert status(ok, FAKE_PBS_QSTAT="down") == "running"
    t0 = time.time()
    assert status(ok, FAKE_PBS_QSTAT="sleep", EVOTRACE_QSTAT_TIMEOUT="0.5") == "running"
    assert time.time() - t0 < 10


def test_broken_json_falls_back(env, tmp_path):
    ok = submit(script(tmp_path, "exit 0"))
    bad = submit(script(tmp_path, "exit 7"))
    settle(ok), settle(bad)
    broken = subprocess.run(["qstat", "-x", "-f", "-F", "json", ok], capture_output=True, text=True,
                            env={**os.environ, "FAKE_PBS_QSTAT": "broken"}).stdout
    with pytest.raises(ValueError):
        json.loads(broken)
    for mode in ("broken", "broken-all"):  # text qstat, then the scrape of the broken JSON
        assert status(ok, FAKE_PBS_QSTAT=mode) == "success"
        assert status(bad, FAKE_PBS_QSTAT=mode) == "failed"


def test_parsers():
    text = "Job Id: 7.srv\n    job_state = R\n\nJob Id: 8.srv\n    job_state = F\n    Exit_status = 0\n"
    assert pbs.parse_text(text, "8.srv") == ("F", 0)
    assert pbs.parse_text(text, "7") == ("R", None)
    assert pbs.classify("R", None) == "running" and pbs.classify("E", None) == "running"
    assert pbs.classify("F", None) == "failed" and pbs.classify("X", 0) == "success"
    assert pbs.parse_json('{"Jobs": {"9.srv": {"job_state": "F", "Exit_status": "0"}}}', "9") == ("F", 0)


SNAKEFILE = r"""
rule all:
    input: "summary.txt"

rule search:
    output: "ranks.txt"
    resources: tasks=2
    shell: "{resources.mpi} -n {resources.tasks} bash -c 'echo gpu=$CUDA_VISIBLE_DEVICES' > {output}"

rule summarize:
    input: "ranks.txt"
    output: "summary.txt"
    params: fail=config.get("fail", 0)
    shell: "sort {input} > {output}; test {params.fail} = 0"
"""


def polaris_profile(tmp_path: Path) -> Path:
    """The Polaris profile with what cannot exist here swapped: account, absolute paths (the test runs
    outside the repository); Cray's mpiexec options go through EVOTRACE_MPIEXEC_OPTS."""
    prof = yaml.safe_load((REPO / "profiles/polaris/config.v8+.yaml").read_text())
    prof["default-resources"]["account"] = "'testproj'"
    prof["default-resources"]["mpi"] = f"'{REPO}/profiles/polaris/mpiexec.sh'"
    prof["jobscript"] = str(REPO / "profiles/polaris/jobscript.sh")
    prof["set-resources"]["search"]["cache_dir"] = f"'{tmp_path / 'scratch'}'"  # Polaris's node SSD
    for step in ("submit", "status", "cancel", "sidecar"):
        prof[f"cluster-generic-{step}-cmd"] = str(REPO / "profiles/polaris" / prof[f"cluster-generic-{step}-cmd"])
    prof.update({"seconds-between-status-checks": 1, "latency-wait": 5, "max-status-checks-per-second": 10})
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.v8+.yaml").write_text(yaml.safe_dump(prof))
    return out


def snakemake(tmp_path, *args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=150)


@pytest.mark.slow
def test_snakemake_through_fake_pbs(env, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    profile = polaris_profile(tmp_path)
    run_env = {**env, "EVOTRACE_VENV": str(VENV_BIN.parent), "EVOTRACE_MPIEXEC_OPTS": "", "FAKE_PBS_QSTAT": "broken",
               "EVOTRACE_PBS_POLL": "1"}
    done = snakemake(tmp_path, "--profile", str(profile), env=run_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "summary.txt").read_text().split() == ["gpu=2", "gpu=3"]
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "pbs_state").glob("*.json"))]
    search = next(j for j in jobs if j["name"] == "smk-search")
    assert search["account"] == "testproj" and search["queue"] == "debug"
    assert search["resources"]["walltime"] == "01:00:00" and search["resources"]["select"] == "1:system=polaris"
    assert all(j["job_state"] == "F" and j["Exit_status"] == 0 for j in jobs)

    (tmp_path / "summary.txt").unlink()
    failed = snakemake(tmp_path, "--profile", str(profile), "--config", "fail=1", env=run_env)
    assert failed.returncode != 0
    assert "Error in rule summarize" in failed.stderr
    last = json.loads(max((tmp_path / "pbs_state").glob("*.json"), key=lambda p: int(p.stem)).read_text())
    assert last["name"] == "smk-summarize" and last["Exit_status"] == 1


@pytest.mark.slow
def test_local_profile_runs_mpi_rule(env, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    done = snakemake(tmp_path, "--profile", str(REPO / "profiles/local"), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mpiexec -n 2" in done.stdout + done.stderr
    assert len((tmp_path / "summary.txt").read_text().split()) == 2


PARALLEL = r"""
N = int(config.get("count", 6))

rule all:
    input: expand("done{i}.txt", i=range(N))

rule work:
    output: "done{i}.txt"
    params: secs=config.get("secs", 3)
    shell: "sleep {params.secs}; touch {output}"
"""


def qstat_calls(state: Path) -> list[list[str]]:
    """The job ids of each qstat call the stand-in server answered."""
    lines = (state / "calls.log").read_text().splitlines()
    return [[a for a in line.split()[2:] if not a.startswith("-") and a != "json"]
            for line in lines if line.split()[1] == "qstat"]


@pytest.mark.slow
def test_one_qstat_per_cycle_for_all_jobs(env, tmp_path):
    (tmp_path / "Snakefile").write_text(PARALLEL)
    run_env = {**env, "EVOTRACE_VENV": str(VENV_BIN.parent), "EVOTRACE_PBS_POLL": "1"}
    done = snakemake(tmp_path, "--profile", str(polaris_profile(tmp_path)), "--config", "secs=6", env=run_env)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = qstat_calls(tmp_path / "pbs_state")
    cycles = [line for log in tmp_path.glob(".snakemake/pbs/*/sidecar.log")
              for line in log.read_text().splitlines() if " polled " in line]
    assert calls and len(calls) == len(cycles)  # one qstat per polling cycle, whatever the number of jobs
    assert max(len(ids) for ids in calls) >= 3  # the jobs then running (submission is sequential)
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "pbs_state").glob("*.json")]
    assert len(jobs) == 6 and all(j["Exit_status"] == 0 for j in jobs)


@pytest.mark.slow
def test_ctrl_c_deletes_every_submitted_job(env, tmp_path):
    (tmp_path / "Snakefile").write_text(PARALLEL)
    run_env = {**env, "EVOTRACE_VENV": str(VENV_BIN.parent), "EVOTRACE_PBS_POLL": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", str(polaris_profile(tmp_path)),
                             "--config", "count=4", "secs=300"], cwd=tmp_path, env=run_env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "snakemake.err", "w"))
    state = tmp_path / "pbs_state"
    deadline = time.time() + 120
    while len([p for p in state.glob("*.json") if json.loads(p.read_text())["job_state"] == "R"]) < 4:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    deadline = time.time() + 60
    while any(json.loads(p.read_text())["job_state"] != "F" for p in state.glob("*.json")):
        assert time.time() < deadline, "a job survived Ctrl-C"
        time.sleep(0.5)
    jobs = [json.loads(p.read_text()) for p in state.glob("*.json")]
    assert len(jobs) == 4 and all(j["Exit_status"] == 271 for j in jobs)


def small_study(folder: Path) -> tuple[Path, dict]:
    """config/ci.yaml cut to one NB201 search of 30 candidates on 2 workers."""
    config = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    config["study"] = "walltime"
    config["search"].update(candidates=30, population=10, sample=3)
    config["runs"] = {"nb201": config["runs"]["nb201"]}
    config["datasets"] = {"digits": config["datasets"]["digits"]}
    config["analysis"].update(snapshots=[5, 15, 25])
    config["analysis"]["trie"]["runs"] = ["nb201"]
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


@pytest.mark.slow
@pytest.mark.mpi
def test_walltime_killed_search_finishes_through_the_retry(env, tmp_path):
    from evotrace.search.invariants import algorithm1_violations

    study, config = small_study(tmp_path)
    run_env = {**env, "EVOTRACE_VENV": str(VENV_BIN.parent), "EVOTRACE_MPIEXEC_OPTS": "", "EVOTRACE_PBS_POLL": "1",
               # the first search job reaches its walltime once 8 candidates are in the journal
               "FAKE_PBS_WALLTIME_ONCE": "smk-search:results/walltime/nb201/journal.jsonl:16"}
    target = "results/walltime/nb201/candidates.parquet"
    done = subprocess.run([sys.executable, "-m", "snakemake", target, "-s", str(REPO / "Snakefile"), "--profile",
                           str(polaris_profile(tmp_path)), "--configfile", str(study)],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    searches = sorted((json.loads(p.read_text()) for p in (tmp_path / "pbs_state").glob("*.json")
                       if json.loads(p.read_text())["name"] == "smk-search"), key=lambda j: int(j["id"].split(".")[0]))
    assert [j["Exit_status"] for j in searches] == [-29, 0]  # killed by walltime, then resubmitted
    assert "walltime" in done.stderr and "killed by walltime" in done.stderr
    trace = pd.read_parquet(tmp_path / target)
    search = config["search"]
    assert algorithm1_violations(trace, search["population"], search["sample"], search["candidates"]) == []
    logs = tmp_path / "logs/walltime/nb201"
    killed, final = (logs / "search.log.1").read_text(), (logs / "search.log.2").read_text()
    assert "30 candidates" in killed and "resuming nb201" in final  # each attempt keeps its log
    assert (logs / "search.log").resolve() == (logs / "search.log.2").resolve()


@pytest.mark.slow
def test_dry_run_plans_queue_and_nodes(env, tmp_path):
    """The default study's searches (W=8: 9 ranks) need 3 nodes; a forced queue too small for them
    stops the run while the DAG is built, before any qsub."""
    base = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile",
            str(polaris_profile(tmp_path)), "--configfile", str(REPO / "config/config.yaml"), "-n"]
    plan = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-3000:]
    searches = re.findall(r"^\s+resources: .*$", plan.stdout.split("rule search:", 1)[1], re.M)[0]
    assert "nodes=3," in searches and "queue=debug-scaling," in searches and "tasks=9," in searches
    forced = subprocess.run(base[:-1], cwd=tmp_path, env={**env, "EVOTRACE_QUEUE": "debug"},
                            capture_output=True, text=True, timeout=600)
    assert forced.returncode != 0
    for part in ("rule search", "3 node(s)", "walltime 01:00:00", "queue debug", "1-2 nodes"):
        assert part in forced.stderr, part
    assert not (tmp_path / "pbs_state" / "calls.log").exists()  # nothing reached PBS
