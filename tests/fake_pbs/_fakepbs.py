"""Shared state of the stand-in PBS: one JSON record per job under $FAKE_PBS_STATE.

Jobs really run, in the background, so the cluster-generic executor sees the same life cycle as on
Polaris: Q -> R -> F with PBS's Exit_status (script exit code, 256+signal after qdel, -29 after a
walltime kill).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVER = "polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"
EXIT_WALLTIME = -29  # JOB_EXEC_KILL_WALLTIME
SIGNAL_BASE = 256  # PBS reports a job killed by signal N as 256 + N (qdel: 271)


def state_dir() -> Path:
    path = Path(os.environ.get("FAKE_PBS_STATE", "/tmp/fake_pbs_state"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_path(jobid: str) -> Path:
    return state_dir() / f"{jobid.split('.')[0]}.json"


def load(jobid: str) -> dict | None:
    try:
        return json.loads(record_path(jobid).read_text())
    except (OSError, ValueError):
        return None


def save(job: dict) -> None:
    path = record_path(job["id"])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def update(jobid: str, **fields) -> dict:
    job = load(jobid) or {}
    job.update(fields)
    save(job)
    return job


def next_seq() -> int:
    """A counter under an exclusive lock: parallel qsubs must not share an id."""
    import fcntl

    with open(state_dir() / "seq.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        seq = int(fh.read().strip() or 1000) + 1
        fh.seek(0)
        fh.truncate()
        fh.write(str(seq))
        return seq


def seconds(walltime: str) -> float:
    parts = [float(p) for p in walltime.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def supervise(jobid: str) -> None:
    """Run the job script like pbs_mom: own process group, walltime enforced, exit status recorded."""
    job = load(jobid)
    if job.get("deleted"):
        update(jobid, job_state="F")
        return
    log = open(job["output"], "ab", buffering=0)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "USER", "LANG", "FAKE_PBS_STATE")}
    env.update(job["variables"])
    nodefile = state_dir() / f"{jobid.split('.')[0]}.nodes"
    nodefile.write_text("localhost\n")
    env.update(
        PBS_JOBID=jobid,
        PBS_JOBNAME=job["name"],
        PBS_O_WORKDIR=job["workdir"],
        PBS_NODEFILE=str(nodefile),
        PBS_ENVIRONMENT="PBS_BATCH",
        PBS_QUEUE=job["queue"],
    )
    proc = subprocess.Popen(
        [job["script"]], cwd=env.get("HOME", "/"), env=env, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    update(jobid, job_state="R", pgid=proc.pid, stime=time.time())
    try:
        code = proc.wait(timeout=job["walltime_s"])
    except subprocess.TimeoutExpired:
        log.write(f"=>> PBS: job killed: walltime exceeded limit {job['walltime']}\n".encode())
        _kill(proc)
        code = EXIT_WALLTIME
    else:
        if code < 0:
            code = SIGNAL_BASE - code
    update(jobid, job_state="F", Exit_status=code)


def _kill(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def main_supervise() -> None:
    supervise(sys.argv[2])
