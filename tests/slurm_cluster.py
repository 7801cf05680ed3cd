"""A real one-node Slurm (Debian's slurmctld/slurmd with munge) for tests: state and munge socket
under one folder, daemons started in the foreground and stopped by their pids. The config goes to
/etc/slurm/slurm.conf (removed afterwards): inside a job the executor plugin drops every SLURM_*
variable, SLURM_CONF included, before its nested srun, which then reads only the default path."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# evotrace test cluster"

CONF = MARK + """
ClusterName=evotrace
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/ctld
SlurmdSpoolDir={root}/slurmd
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# squeue is the status source without slurmdbd: keep finished jobs visible for 10 minutes
MinJobAge=600
# more CPUs than the machine has: the searches' W+1 ranks and the other rules share two cores
SlurmdParameters=config_overrides
NodeName={host} CPUs={cpus} RealMemory=64000 TmpDisk=1000000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def installed() -> bool:
    return all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS) and bool(shutil.which("sbatch"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_slurm(root: Path, cpus: int = 16, timeout: float = 60):
    """Yields the environment (SLURM_CONF) in which sbatch/squeue/scancel reach the new cluster."""
    root = Path(root).resolve()
    for sub in ("ctld", "slurmd"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    conf = SYSTEM_CONF
    if conf.exists() and not conf.read_text().startswith(MARK):
        raise RuntimeError(f"{conf} belongs to a real Slurm setup: not replacing it")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONF.format(host=host, root=root, cpus=cpus, ctld_port=_free_port(), slurmd_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen] = []
    try:
        log = open(root / "daemons.out", "ab")
        started.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={root}/munge.socket", f"--pid-file={root}/munged.pid",
             f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
            stdout=log, stderr=log))
        _wait(lambda: (root / "munge.socket").exists(), timeout, "munged", root)
        for daemon in ("slurmctld", "slurmd"):
            started.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, stdout=log, stderr=log))
        _wait(lambda: _idle(env), timeout, "an idle Slurm node", root)
        yield env
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if conf.exists() and conf.read_text().startswith(MARK):
            conf.unlink()


def _idle(env) -> bool:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() in ("idle", "mixed")


def _wait(ready, timeout: float, what: str, root: Path) -> None:
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline:
            logs = "".join(p.read_text(errors="replace")[-1500:] for p in sorted(root.glob("*.log")))
            raise RuntimeError(f"no {what} after {timeout:.0f} s; logs under {root}:\n{logs}")
        time.sleep(0.2)
