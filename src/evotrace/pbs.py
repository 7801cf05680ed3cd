"""PBS Pro glue for Snakemake's cluster-generic executor (ALCF Polaris).

`evotrace pbs submit|status|cancel` are the commands that profiles/polaris/config.v8+.yaml gives the
executor. The plugin appends the job script path to the submit command and the job id to the status
command, reads the job id from the first line that submit prints, and aborts the whole run when the
status command exits non-zero or prints anything but running/success/failed: so status never fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

RUNNING, SUCCESS, FAILED = "running", "success", "failed"

# Q queued, H held, W waiting, T transiting, M moved, R running, S suspended, E exiting (still
# staging output), B array begun; F finished and X finished subjob are the terminal states.
ACTIVE_STATES = frozenset("QHWTMRSEB")
FINISHED_STATES = frozenset("FX")

# (max nodes, max minutes), checked only to warn: qsub's own refusal does not say which limit.
QUEUE_LIMITS = {
    "debug": (2, 60),
    "debug-scaling": (10, 60),
    "preemptable": (10, 72 * 60),
    "capacity": (4, 168 * 60),
    "demand": (56, 60),
    "prod": (496, 24 * 60),
}
MIN_WALLTIME_MINUTES = 5  # Polaris rejects shorter jobs

ENV_DEFAULTS = {  # resource -> (environment variable, fallback) for values the profile leaves unset
    "account": ("EVOTRACE_ACCOUNT", None),
    "queue": ("EVOTRACE_QUEUE", "debug"),
    "filesystems": ("EVOTRACE_FILESYSTEMS", "home:eagle"),
}


def _unset(value: str | None) -> bool:
    """A resource the profile took from an environment variable that was not set arrives verbatim."""
    return value is None or not value.strip() or value.strip().startswith("$") or value.strip() == "None"


def resolve(name: str, value: str | None) -> str | None:
    """Profile value, else the EVOTRACE_* variable, else the built-in default."""
    if not _unset(value):
        return value.strip()
    var, fallback = ENV_DEFAULTS[name]
    env = os.environ.get(var, "")
    return env.strip() if not _unset(env) else fallback


def walltime(minutes: float | str) -> str:
    """Snakemake's `runtime` is in minutes; PBS wants HH:MM:SS. A value with ':' passes through."""
    if isinstance(minutes, str) and ":" in minutes:
        return minutes
    total = max(int(math.ceil(float(minutes) * 60)), 0)
    hours, rest = divmod(total, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _minutes(value: float | str) -> float:
    if isinstance(value, str) and ":" in value:
        parts = [float(p) for p in value.split(":")]
        while len(parts) < 3:
            parts.insert(0, 0.0)
        return parts[0] * 60 + parts[1] + parts[2] / 60
    return float(value)


def node_count(nodes: int, tasks: int, ppn: int) -> int:
    """Enough nodes for `tasks` ranks at `ppn` per node, so an MPI rule only has to declare tasks."""
    return max(int(nodes), math.ceil(int(tasks) / max(int(ppn), 1)), 1)


def build_qsub(args, jobscript: str) -> list[str]:
    """The qsub command line for one Snakemake job script (no #PBS lines: the profile is the source)."""
    account = resolve("account", args.account)
    if account is None:
        raise SystemExit(
            "evotrace pbs submit: no PBS account; export EVOTRACE_ACCOUNT=<project> "
            "or set default-resources account in the profile"
        )
    queue = resolve("queue", args.queue)
    filesystems = resolve("filesystems", args.filesystems)
    nodes = node_count(args.nodes, args.tasks, args.ppn)
    minutes = max(_minutes(args.walltime), args.min_walltime)
    select = f"select={nodes}" + (f":system={args.system}" if args.system else "")

    limits = QUEUE_LIMITS.get(queue)
    if limits and (nodes > limits[0] or minutes > limits[1]):
        print(
            f"evotrace pbs submit: warning: {nodes} node(s), {walltime(minutes)} exceeds queue {queue} "
            f"limits ({limits[0]} nodes, {walltime(limits[1])}); qsub will probably refuse it",
            file=sys.stderr,
        )
    if queue == "prod" and nodes < 10:
        print("evotrace pbs submit: warning: prod takes 10 nodes or more", file=sys.stderr)

    cmd = ["qsub", "-A", account, "-q", queue, "-l", select, "-l", f"walltime={walltime(minutes)}"]
    if filesystems:
        cmd += ["-l", f"filesystems={filesystems}"]
    if args.place:
        cmd += ["-l", f"place={args.place}"]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", args.name or "smk")[:230]
    if not name[0].isalpha():
        name = "j" + name
    cmd += ["-N", name]
    if args.log_dir:
        log_dir = Path(args.log_dir).resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cmd += ["-j", "oe", "-k", "doe", "-o", str(log_dir / f"{name}.{stamp}.{os.getpid()}.log")]
    forwarded = sorted(v for v in os.environ if v.startswith("EVOTRACE_"))
    if forwarded:
        cmd += ["-v", ",".join(forwarded)]  # names only: qsub copies the current values
    if args.extra:
        cmd += shlex.split(args.extra)
    return cmd + [jobscript]


def submit(args) -> int:
    cmd = build_qsub(args, args.jobscript)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        print(f"evotrace pbs submit: qsub failed ({proc.returncode}): {shlex.join(cmd)}", file=sys.stderr)
        return proc.returncode or 1
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        print("evotrace pbs submit: qsub printed no job id", file=sys.stderr)
        return 1
    print(lines[-1])  # the plugin takes the first line of our output as the job id
    return 0


def _same_job(key: str, jobid: str) -> bool:
    return key == jobid or key.split(".")[0] == jobid.split(".")[0]


def _exit_status(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_json(text: str, jobid: str) -> tuple[str, int | None] | None:
    """(job_state, Exit_status) from `qstat -f -F json`; ValueError when the JSON is broken."""
    jobs = json.loads(text).get("Jobs") or {}
    for key, job in jobs.items():
        if _same_job(key, jobid):
            return job.get("job_state"), _exit_status(job.get("Exit_status"))
    return None


def parse_text(text: str, jobid: str) -> tuple[str, int | None] | None:
    """(job_state, Exit_status) from plain `qstat -f`: blocks start with `Job Id:`, then `key = value`."""
    for block in re.split(r"^Job Id:\s*", text, flags=re.M)[1:]:
        key, _, body = block.partition("\n")
        if not _same_job(key.strip(), jobid):
            continue
        fields = dict(re.findall(r"^\s+([A-Za-z_.]+) = (.*)$", body, flags=re.M))
        if "job_state" in fields:
            return fields["job_state"].strip(), _exit_status(fields.get("Exit_status"))
    return None


def scrape(text: str) -> tuple[str, int | None] | None:
    """Last resort on broken JSON of a single job: the two fields are plain scalars."""
    state = re.search(r'"job_state"\s*:\s*"(\w)"', text)
    if not state:
        return None
    code = re.search(r'"Exit_status"\s*:\s*"?(-?\d+)', text)
    return state.group(1), int(code.group(1)) if code else None


def classify(state: str | None, exit_status: int | None) -> str:
    """PBS state -> the plugin's word; a finished job without an exit status never ran (qdel in queue)."""
    if state in FINISHED_STATES:
        return SUCCESS if exit_status == 0 else FAILED
    return RUNNING  # ACTIVE_STATES, and any state letter newer than this list


def _qstat(args: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["qstat", *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as err:
        print(f"evotrace pbs status: qstat unavailable ({err}); reporting running", file=sys.stderr)
        return None


def _unknown(proc: subprocess.CompletedProcess) -> bool:
    return "unknown job id" in (proc.stdout + proc.stderr).lower()


def job_status(jobid: str, timeout: float | None = None) -> str:
    """running/success/failed for one job; a scheduler hiccup is `running` so Snakemake asks again."""
    if timeout is None:
        timeout = float(os.environ.get("EVOTRACE_QSTAT_TIMEOUT", "20"))
    proc = _qstat(["-x", "-f", "-F", "json", jobid], timeout)
    if proc is None:
        return RUNNING
    if _unknown(proc):
        return FAILED  # purged from history, or never existed
    try:
        found = parse_json(proc.stdout, jobid)
    except ValueError:
        found = None
        text = _qstat(["-x", "-f", jobid], timeout)
        if text is not None:
            if _unknown(text):
                return FAILED
            found = parse_text(text.stdout, jobid)
        if found is None:
            found = scrape(proc.stdout)
    if found is None:
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            print(f"evotrace pbs status: qstat failed ({msg[0]}); reporting running", file=sys.stderr)
        else:
            print(f"evotrace pbs status: {jobid} not in qstat output; reporting running", file=sys.stderr)
        return RUNNING
    return classify(*found)


def status(args) -> int:
    try:
        word = job_status(args.jobid)
    except Exception as err:  # noqa: BLE001 - any crash here would abort the Snakemake run
        print(f"evotrace pbs status: {err!r}; reporting running", file=sys.stderr)
        word = RUNNING
    print(word)
    return 0


def cancel(args) -> int:
    """qdel every id; one already finished is no reason to stop (PBS reports it and deletes the rest)."""
    if not args.jobids:
        return 0
    try:
        proc = subprocess.run(["qdel", *args.jobids], capture_output=True, text=True, timeout=30)
        sys.stderr.write(proc.stdout + proc.stderr)
    except (OSError, subprocess.SubprocessError) as err:
        print(f"evotrace pbs cancel: {err}", file=sys.stderr)
    return 0


def register(sub) -> None:
    pbs = sub.add_parser("pbs", help="PBS Pro submit/status/cancel for Snakemake's cluster-generic executor")
    cmds = pbs.add_subparsers(dest="pbs_cmd", required=True)

    s = cmds.add_parser("submit", help="qsub a Snakemake job script; prints only the job id")
    s.add_argument("-A", "--account", help="project (-A); unset or '$...' -> $EVOTRACE_ACCOUNT")
    s.add_argument("-q", "--queue", help="queue (-q); unset -> $EVOTRACE_QUEUE or debug")
    s.add_argument("-n", "--nodes", type=int, default=1)
    s.add_argument("-t", "--tasks", type=int, default=1, help="MPI ranks; raises nodes to ceil(tasks/ppn)")
    s.add_argument("--ppn", type=int, default=4, help="ranks per node (4 = one per A100 on Polaris)")
    s.add_argument("-w", "--walltime", default="30", help="minutes (Snakemake runtime) or HH:MM:SS")
    s.add_argument("--min-walltime", type=float, default=MIN_WALLTIME_MINUTES, help="minutes")
    s.add_argument("-f", "--filesystems", help="unset -> $EVOTRACE_FILESYSTEMS or home:eagle")
    s.add_argument("-p", "--place", default="scatter")
    s.add_argument("--system", default="polaris", help="select=N:system=...; empty to leave out")
    s.add_argument("-N", "--name", default="smk")
    s.add_argument("-o", "--log-dir", default="logs/pbs", help="joined stdout/stderr, written while the job runs")
    s.add_argument("--extra", help="further qsub arguments, e.g. '-r y' for preemptable")
    s.add_argument("--dry-run", action="store_true", help="print the qsub command instead of running it")
    s.add_argument("jobscript")
    s.set_defaults(func=submit)

    st = cmds.add_parser("status", help="print running, success or failed; always exits 0")
    st.add_argument("jobid")
    st.set_defaults(func=status)

    c = cmds.add_parser("cancel", help="qdel the given jobs")
    c.add_argument("jobids", nargs="*")
    c.set_defaults(func=cancel)


def main(argv=None) -> int:
    """`python -m evotrace.pbs ...`: the same commands without loading the other stages."""
    import argparse

    parser = argparse.ArgumentParser(prog="evotrace")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pbs", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
