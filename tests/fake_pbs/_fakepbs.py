"""Shared state of the stand-in PBS: one JSON record per job under $FAKE_PBS_STATE.

Jobs really run, in the background, so the cluster-generic executor sees the same life cycle as on
Polaris: Q -> R -> F with PBS's Exit_status (script exit code, 256+signal after qdel, -29 after a
walltime kill). Queue limits and prod's routing come from the profile's queues.yaml, as on Polaris.
Every command appends one line to calls.log, so tests can count the server's load.

Knobs (environment of the command or of qsub):
FAKE_PBS_SECONDS_PER_MINUTE  walltime clock: seconds of real time per walltime minute (default 60)
FAKE_PBS_WALLTIME_ONCE=NAME:GLOB:LINES  the first job named NAME hits its walltime as soon as a file
    matching GLOB (under its working directory) has LINES lines: a walltime kill at a known point
FAKE_PBS_QSUB=down:N, FAKE_PBS_QDEL=down:N  the first N qsub (qdel) calls find the server unreachable
"""

from __future__ import annotations

import contextlib
import fcntl
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


REPO = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    path = Path(os.environ.get("FAKE_PBS_STATE", "/tmp/fake_pbs_state"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_call(command: str, args: list[str]) -> None:
    with open(state_dir() / "calls.log", "a") as fh:
        fh.write(f"{time.time():.3f} {command} {' '.join(args)}\n")


def server_down(variable: str, command: str) -> bool:
    """True (and the message PBS prints) for the first N calls when $variable is down:N."""
    mode = os.environ.get(variable, "")
    if not mode.startswith("down:"):
        return False
    budget = state_dir() / f"{command}_down"
    used = int(budget.read_text()) if budget.exists() else 0
    if used >= int(mode.split(":")[1]):
        return False
    budget.write_text(str(used + 1))
    print(f"Connection refused\n{command}: cannot connect to server polaris-pbs-01 (errno=15010)", file=sys.stderr)
    return True


def queues() -> dict:
    import yaml

    path = os.environ.get("FAKE_PBS_QUEUES") or REPO / "profiles" / "polaris" / "queues.yaml"
    return yaml.safe_load(Path(path).read_text())["queues"]


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


@contextlib.contextmanager
def server_lock(name: str = "server.lock"):
    """The server's one writer at a time: the cancel's qdel and the sidecar's qdel of one Ctrl-C race the
    job's own supervisor, and an unlocked read-modify-write would put a finished job back to R."""
    with open(state_dir() / name, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield fh


def update(jobid: str, **fields) -> dict:
    with server_lock():
        job = load(jobid) or {}
        job.update(fields)
        save(job)
        return job


def next_seq() -> int:
    """A counter under an exclusive lock: parallel qsubs must not share an id."""
    with server_lock("seq.lock") as fh:
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


def _walltime_trigger(job: dict):
    """FAKE_PBS_WALLTIME_ONCE: (glob, lines) when this job is the first of its name, else None."""
    spec = job["variables"].get("FAKE_PBS_WALLTIME_ONCE") or os.environ.get("FAKE_PBS_WALLTIME_ONCE", "")
    if not spec:
        return None
    name, pattern, lines = spec.split(":")
    if name != job["name"]:
        return None
    try:
        fd = os.open(state_dir() / f"walltime_once.{name}", os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return None
    os.close(fd)
    return pattern, int(lines)


def _lines(workdir: str, pattern: str) -> int:
    best = 0
    for path in Path(workdir).glob(pattern):
        try:
            best = max(best, path.read_bytes().count(b"\n"))
        except OSError:
            pass
    return best


def supervise(jobid: str) -> None:
    """Run the job script like pbs_mom: own process group, walltime enforced, exit status recorded.
    A preempted rerunnable job (-r y) goes back to the queue and runs again."""
    while True:
        job = load(jobid)
        if job.get("deleted"):
            update(jobid, job_state="F")
            return
        code = _run_once(jobid, job)
        job = load(jobid)
        if job.get("preempted") and job.get("rerun") == "y" and not job.get("deleted"):
            update(jobid, job_state="Q", preempted=False, run_count=job.get("run_count", 1) + 1)
            time.sleep(0.5)
            continue
        update(jobid, job_state="F", Exit_status=code)
        return


def _run_once(jobid: str, job: dict) -> int:
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
    scale = float(os.environ.get("FAKE_PBS_SECONDS_PER_MINUTE", 60)) / 60
    deadline = time.time() + job["walltime_s"] * scale
    trigger = _walltime_trigger(job)
    while proc.poll() is None:
        expired = time.time() > deadline or (trigger and _lines(job["workdir"], trigger[0]) >= trigger[1])
        if expired:
            log.write(f"=>> PBS: job killed: walltime {job['walltime']} exceeded limit {job['walltime']}\n".encode())
            _kill(proc)
            return EXIT_WALLTIME
        time.sleep(0.1)
    code = proc.returncode
    return SIGNAL_BASE - code if code < 0 else code


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
