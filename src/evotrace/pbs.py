"""PBS Pro glue for Snakemake's cluster-generic executor (ALCF Polaris).

profiles/polaris gives the executor four commands, all `python -m evotrace.pbs ...` (no torch import):
`submit` (the plugin appends the job script; the job's resources are read from its `# properties`
line, and only the job id may be printed), `status` (must print running/success/failed and never
exit non-zero: anything else aborts the whole run), `cancel` (called without a shell, 2 s timeout)
and `sidecar` (one process for the whole run: it polls PBS once per cycle for every active job and
writes a status file that `status` reads, and deletes every job still active when Snakemake stops).
Queue limits come from one data file, profiles/polaris/queues.yaml.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .durable import atomic_write

RUNNING, SUCCESS, FAILED = "running", "success", "failed"

# Q queued, H held, W waiting, T transiting, M moved, R running, S suspended, E exiting (still
# staging output), B array begun; F finished and X finished subjob are the terminal states.
ACTIVE_STATES = frozenset("QHWTMRSEB")
FINISHED_STATES = frozenset("FX")
EXIT_WALLTIME = -29  # JOB_EXEC_KILL_WALLTIME
EXIT_MEANINGS = {EXIT_WALLTIME: "killed by walltime", 271: "killed by qdel or preemption (SIGTERM)"}

QUEUES_FILE = Path(__file__).resolve().parents[2] / "profiles" / "polaris" / "queues.yaml"
SIDECAR_VAR = "SNAKEMAKE_CLUSTER_SIDECAR_VARS"  # the sidecar's first output line, given to each command

ENV_DEFAULTS = {  # resource -> (environment variable, fallback) for values the profile leaves unset
    "account": ("EVOTRACE_ACCOUNT", None),
    "queue": ("EVOTRACE_QUEUE", "auto"),
    "filesystems": ("EVOTRACE_FILESYSTEMS", "home:eagle"),
}


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _unset(value) -> bool:
    """A resource the profile took from an environment variable that was not set arrives verbatim."""
    if value is None:
        return True
    value = str(value).strip()
    return not value or value.startswith("$") or value == "None"


def resolve(name: str, value: str | None) -> str | None:
    """Profile value, else the EVOTRACE_* variable, else the built-in default."""
    if not _unset(value):
        return str(value).strip()
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


# ---------------------------------------------------------------------------------------------- queues


@dataclass(frozen=True)
class Queue:
    name: str
    min_nodes: int
    max_nodes: int
    max_minutes: float
    routes: tuple = ()
    rerunnable: bool = False

    def limits(self) -> str:
        text = f"{self.min_nodes}-{self.max_nodes} nodes, walltime <= {walltime(self.max_minutes)}"
        if self.routes:
            text += " (routes " + ", ".join(f"{r.name}: {r.limits()}" for r in self.routes) + ")"
        return text

    def route(self, nodes: int, minutes: float) -> Queue | None:
        """The execution queue that takes the job: itself, or the route a routing queue sends it to."""
        if not self.routes:
            return self if self.min_nodes <= nodes <= self.max_nodes and minutes <= self.max_minutes else None
        for r in self.routes:
            if r.min_nodes <= nodes <= r.max_nodes:  # PBS routes by size; the walltime is then checked
                return r if minutes <= r.max_minutes else None
        return None


@dataclass(frozen=True)
class QueueTable:
    queues: dict
    min_minutes: float
    source: str
    date: str


class QueueError(ValueError):
    """A job that its forced queue (or every queue) cannot hold: stops the run before any qsub."""


def _queue(name: str, spec: dict) -> Queue:
    lo, hi = spec["nodes"]
    routes = tuple(_queue(n, s) for n, s in (spec.get("routes") or {}).items())
    return Queue(name, int(lo), int(hi), float(spec["max_minutes"]), routes, bool(spec.get("rerunnable")))


def load_queues(path: str | Path | None = None) -> QueueTable:
    """The queue limits data file: $EVOTRACE_PBS_QUEUES, else profiles/polaris/queues.yaml."""
    import yaml

    path = Path(path or os.environ.get("EVOTRACE_PBS_QUEUES") or QUEUES_FILE)
    try:
        data = yaml.safe_load(path.read_text())
        queues = {name: _queue(name, spec) for name, spec in data["queues"].items()}
        return QueueTable(queues, float(data.get("min_walltime_minutes", 0)), data["source"], str(data["date"]))
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        raise QueueError(f"queue limits file {path} unreadable ({err!r}); set EVOTRACE_PBS_QUEUES") from err


def plan(nodes: int, minutes: float, queue: str | None = None, rule: str = "job",
         table: QueueTable | None = None) -> tuple[str, float]:
    """(queue, minutes) for a job: the forced queue if it holds the job, else the first queue of the
    data file that does. Walltimes below the site minimum are raised to it."""
    table = table or load_queues()
    minutes = max(float(minutes), table.min_minutes)
    queue = resolve("queue", queue)
    where = f"rule {rule}: {nodes} node(s), walltime {walltime(minutes)}"
    if queue and queue != "auto":
        known = table.queues.get(queue) or next(
            (r for q in table.queues.values() for r in q.routes if r.name == queue), None)
        if known is None:  # a reservation or a queue the file does not list: PBS decides
            return queue, minutes
        if known.route(nodes, minutes) is None:
            raise QueueError(
                f"{where} do not fit queue {queue} ({known.limits()}; limits from {table.source}, "
                f"{table.date}). Choose another queue (EVOTRACE_QUEUE, or resource `queue` of the rule; "
                f"'auto' picks one) or change the rule's nodes/runtime.")
        return queue, minutes
    for q in table.queues.values():
        if q.route(nodes, minutes) is not None:
            return q.name, minutes
    raise QueueError(f"{where}: no Polaris queue holds it; limits ({table.source}, {table.date}): "
                     + "; ".join(f"{q.name} {q.limits()}" for q in table.queues.values()))


def rerunnable(queue: str, table: QueueTable | None = None) -> bool:
    q = (table or load_queues()).queues.get(queue)
    return bool(q and q.rerunnable)


def plan_rules(workflow) -> None:
    """Make `nodes` and `queue` of every cluster rule the planned values, computed when Snakemake
    builds each job: a dry-run then shows them, and a job that no queue (or its forced queue) holds
    stops the run before anything is submitted. Only for profiles with `queue` and `ppn` resources."""
    for rule in workflow.rules:
        res = rule.resources
        # workflow.is_local() is true for every rule while the Snakefile is read: use the rule's own flags
        local = rule.norun or rule.name in getattr(workflow, "_localrules", ())
        if "queue" not in res.keys() or "ppn" not in res.keys() or local:
            continue
        originals = {k: res.get(k) for k in ("queue", "nodes", "tasks", "ppn", "runtime")}

        def planned(wildcards, input, attempt, threads, rule=rule, originals=originals):
            kwargs = dict(input=input, attempt=attempt, threads=threads, rulename=rule.name,
                          async_run=workflow.async_run)
            v = {k: r.evaluate(wildcards, **kwargs).value for k, r in originals.items()}
            nodes = node_count(v["nodes"] or 1, v["tasks"] or 1, v["ppn"] or 1)
            queue, _ = plan(nodes, _minutes(v["runtime"] or 30), v["queue"], rule.name)
            return nodes, queue

        res["nodes"] = lambda wildcards, input, attempt, threads, f=planned: f(wildcards, input, attempt, threads)[0]
        res["queue"] = lambda wildcards, input, attempt, threads, f=planned: f(wildcards, input, attempt, threads)[1]


# ---------------------------------------------------------------------------------------------- submit


def job_properties(jobscript: str) -> dict:
    """The `# properties = {json}` line Snakemake writes into every job script."""
    try:
        with open(jobscript) as fh:
            for line in fh:
                if line.startswith("# properties = "):
                    return json.loads(line[len("# properties = "):])
    except (OSError, ValueError):
        pass
    return {}


def _job_value(args, props: dict, name: str, default=None):
    """A command-line option wins; else the job's resource from its properties; else the default."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    value = (props.get("resources") or {}).get(name)
    return default if value is None or value == "" else value


def build_qsub(args, jobscript: str) -> list[str]:
    """The qsub command line for one Snakemake job script (no #PBS lines: the profile is the source)."""
    props = job_properties(jobscript)
    res = lambda name, default=None: _job_value(args, props, name, default)  # noqa: E731
    account = resolve("account", res("account"))
    if account is None:
        raise SystemExit(
            "evotrace pbs submit: no PBS account; export EVOTRACE_ACCOUNT=<project> "
            "or set default-resources account in the profile"
        )
    filesystems = resolve("filesystems", res("filesystems"))
    nodes = node_count(res("nodes", 1), res("tasks", 1), res("ppn", 4))
    rule = args.name or props.get("rule") or "smk"
    min_walltime = args.min_walltime
    table = load_queues()
    if min_walltime is not None:
        table = QueueTable(table.queues, float(min_walltime), table.source, table.date)
    try:
        queue, minutes = plan(nodes, _minutes(res("runtime", 30)), res("queue"), rule, table)
    except QueueError as err:
        raise SystemExit(f"evotrace pbs submit: {err}") from None
    system = res("system", "polaris")
    select = f"select={nodes}" + (f":system={system}" if system else "")

    cmd = ["qsub", "-A", account, "-q", queue, "-l", select, "-l", f"walltime={walltime(minutes)}"]
    if filesystems:
        cmd += ["-l", f"filesystems={filesystems}"]
    place = res("place", "scatter")
    if place:
        cmd += ["-l", f"place={place}"]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", args.name or f"smk-{rule}")[:230]
    if not name[0].isalpha():
        name = "j" + name
    cmd += ["-N", name]
    if rerunnable(queue, table):
        cmd += ["-r", "y"]  # a preempted job goes back to the queue instead of being lost
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


# qsub/qdel failures worth another try: the server did not answer (no job can have been created)
TRANSIENT = re.compile(r"cannot connect|connection refused|communication failure|errno=150(10|31)|"
                       r"server.*(busy|not available)", re.I)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def submit(args) -> int:
    cmd = build_qsub(args, args.jobscript)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    timeout = _env_float("EVOTRACE_QSUB_TIMEOUT", 60)
    tries = int(_env_float("EVOTRACE_QSUB_TRIES", 4))
    delay = _env_float("EVOTRACE_PBS_RETRY_DELAY", 5)
    for attempt in range(1, tries + 1):
        proc = _run(cmd, timeout)
        if proc is None:
            # the server may have queued it: a retry could start the job twice (look for it: qstat -u)
            print(f"evotrace pbs submit: qsub timed out after {timeout:.0f} s (EVOTRACE_QSUB_TIMEOUT); "
                  f"not retried, the job may exist: qstat -u $USER. {shlex.join(cmd)}", file=sys.stderr)
            return 1
        if proc.returncode == 0:
            break
        out = proc.stdout + proc.stderr
        if attempt < tries and TRANSIENT.search(out):
            print(f"evotrace pbs submit: qsub attempt {attempt} failed ({out.strip()}); retrying",
                  file=sys.stderr)
            time.sleep(delay * 2 ** (attempt - 1))
            continue
        sys.stderr.write(out)
        print(f"evotrace pbs submit: qsub refused the job ({proc.returncode}): {shlex.join(cmd)}",
              file=sys.stderr)
        return proc.returncode or 1
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        print("evotrace pbs submit: qsub printed no job id", file=sys.stderr)
        return 1
    jobid = lines[-1]
    board = Board.from_env()
    if board:
        board.register(jobid)
    print(jobid)  # the plugin takes the first line of our output as the job id
    return 0


# ---------------------------------------------------------------------------------------------- status


def _same_job(key: str, jobid: str) -> bool:
    return key == jobid or key.split(".")[0] == jobid.split(".")[0]


def _exit_status(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_json_all(text: str) -> dict[str, tuple[str, int | None]]:
    """{job id: (job_state, Exit_status)} from `qstat -f -F json`; ValueError when the JSON is broken."""
    jobs = json.loads(text).get("Jobs") or {}
    return {key: (job.get("job_state"), _exit_status(job.get("Exit_status"))) for key, job in jobs.items()}


def parse_text_all(text: str) -> dict[str, tuple[str, int | None]]:
    """The same from plain `qstat -f`: blocks start with `Job Id:`, then `key = value` lines."""
    found = {}
    for block in re.split(r"^Job Id:\s*", text, flags=re.M)[1:]:
        key, _, body = block.partition("\n")
        fields = dict(re.findall(r"^\s+([A-Za-z_.]+) = (.*)$", body, flags=re.M))
        if "job_state" in fields:
            found[key.strip()] = (fields["job_state"].strip(), _exit_status(fields.get("Exit_status")))
    return found


def _lookup(found: dict, jobid: str):
    return next((v for k, v in found.items() if _same_job(k, jobid)), None)


def parse_json(text: str, jobid: str) -> tuple[str, int | None] | None:
    return _lookup(parse_json_all(text), jobid)


def parse_text(text: str, jobid: str) -> tuple[str, int | None] | None:
    return _lookup(parse_text_all(text), jobid)


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


UNKNOWN = re.compile(r"Unknown Job Id\s+(\S+)", re.I)
UNKNOWN_REASON = ("unknown to PBS: refused after qsub (e.g. by the routing of prod: see "
                  "profiles/polaris/queues.yaml) or purged from the history")


def query(jobids: list[str], timeout: float | None = None) -> dict[str, tuple[str, str]]:
    """{job id: (word, reason)} for every id PBS answered about, from ONE `qstat -x -f -F json` call
    (a second, plain-text one only when PBS's JSON is broken). Ids missing from the answer (qstat
    down or timed out) are left out: the caller reports them running."""
    if timeout is None:
        timeout = _env_float("EVOTRACE_QSTAT_TIMEOUT", 20)
    proc = _qstat(["-x", "-f", "-F", "json", *jobids], timeout)
    if proc is None:
        return {}
    unknown = {m for m in UNKNOWN.findall(proc.stdout + proc.stderr)}
    try:
        found = parse_json_all(proc.stdout)
    except ValueError:
        found = {}
        text = _qstat(["-x", "-f", *jobids], timeout)
        if text is not None:
            found = parse_text_all(text.stdout)
        if not found and len(jobids) == 1 and (one := scrape(proc.stdout)):
            found = {jobids[0]: one}
    if not found and not unknown and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        print(f"evotrace pbs status: qstat failed ({msg[0]}); reporting running", file=sys.stderr)
    answers = {}
    for jobid in jobids:
        hit = _lookup(found, jobid)
        if hit is not None:
            word = classify(*hit)
            reason = EXIT_MEANINGS.get(hit[1], f"Exit_status {hit[1]}") if word == FAILED else ""
            answers[jobid] = (word, reason)
        elif any(_same_job(u, jobid) for u in unknown):
            answers[jobid] = (FAILED, UNKNOWN_REASON)
    return answers


def job_status(jobid: str, timeout: float | None = None) -> str:
    """running/success/failed for one job; a scheduler hiccup is `running` so Snakemake asks again."""
    word, reason = query([jobid], timeout).get(jobid, (RUNNING, ""))
    if reason:
        print(f"evotrace pbs status: job {jobid} {reason}", file=sys.stderr)
    return word


# --------------------------------------------------------------------------------------------- sidecar


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


class Board:
    """The sidecar's folder: one file per submitted job under jobs/, the latest answers in status.json."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.jobs = self.root / "jobs"
        self.status_file = self.root / "status.json"

    @classmethod
    def from_env(cls) -> Board | None:
        root = os.environ.get(SIDECAR_VAR, "").strip()
        return cls(root) if root and Path(root, "jobs").is_dir() else None

    def register(self, jobid: str) -> None:
        (self.jobs / jobid).touch()

    def registered(self) -> list[str]:
        return sorted(p.name for p in self.jobs.iterdir() if not p.name.startswith("."))

    def read(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def write(self, answers: dict) -> None:
        _write_atomic(self.status_file, json.dumps({"time": time.time(), "pid": os.getpid(), "jobs": answers}))


def poll_interval() -> float:
    return _env_float("EVOTRACE_PBS_POLL", 30)


def board_status(board: Board, jobid: str) -> str | None:
    """The sidecar's answer, or None when it is gone or stale (the caller then asks PBS itself)."""
    if not (board.jobs / jobid).exists():
        board.register(jobid)  # a job Snakemake re-attached to after a restart: watch it from now on
    state = board.read()
    if not state or time.time() - state.get("time", 0) > 3 * poll_interval() + 60:
        return None
    word, reason = state["jobs"].get(jobid, (RUNNING, ""))
    if reason:
        print(f"evotrace pbs status: job {jobid} {reason}", file=sys.stderr)
    return word


def status(args) -> int:
    try:
        board = Board.from_env()
        word = board_status(board, args.jobid) if board else None
        if word is None:
            word = job_status(args.jobid)
    except Exception as err:  # noqa: BLE001 - any crash here would abort the Snakemake run
        print(f"evotrace pbs status: {err!r}; reporting running", file=sys.stderr)
        word = RUNNING
    print(word)
    return 0


def delete(jobids: list[str], tries: int | None = None) -> list[str]:
    """qdel with a timeout and retries; returns the ids still not deleted. A job PBS reports finished
    or unknown is done; a busy or unreachable server is asked again."""
    tries = tries or int(_env_float("EVOTRACE_QDEL_TRIES", 4))
    timeout = _env_float("EVOTRACE_QDEL_TIMEOUT", 30)
    delay = _env_float("EVOTRACE_PBS_RETRY_DELAY", 5)
    left = list(jobids)
    for attempt in range(tries):
        if not left:
            break
        try:
            proc = subprocess.run(["qdel", *left], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as err:
            print(f"evotrace pbs cancel: qdel: {err}", file=sys.stderr)
        else:
            out = proc.stdout + proc.stderr
            sys.stderr.write(out)
            # PBS deletes the others and names only the jobs already finished or unknown
            if proc.returncode == 0 or not TRANSIENT.search(out):
                return []
        if left and attempt + 1 < tries:
            time.sleep(delay * 2 ** attempt)
    if left:
        print(f"evotrace pbs cancel: could not delete {' '.join(left)}: run qdel yourself", file=sys.stderr)
    return left


def cancel(args) -> int:
    """The plugin kills this after 2 s: hand the ids to a detached qdel that may retry for longer."""
    if not args.jobids:
        return 0
    if args.wait:
        delete(args.jobids)
        return 0
    subprocess.Popen([sys.executable, "-m", "evotrace.pbs", "cancel", "--wait", *args.jobids],
                     stdin=subprocess.DEVNULL, start_new_session=True)
    return 0


def sidecar(args) -> int:
    """One process per Snakemake run: poll PBS once per cycle for all active jobs; on exit (Snakemake
    done, Ctrl-C, or Snakemake gone) delete every job it saw submitted that is still active."""
    root = Path(args.dir or f".snakemake/pbs/{os.getpid()}").resolve()
    board = Board(root)
    board.jobs.mkdir(parents=True, exist_ok=True)
    board.write({})
    print(root, flush=True)  # the plugin hands this line to every command as SNAKEMAKE_CLUSTER_SIDECAR_VARS
    log = open(root / "sidecar.log", "a", buffering=1)
    sys.stderr = log
    parent = os.getppid()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda num, frame: stop.append(num))
    answers: dict[str, list] = {}
    interval = poll_interval()
    while not stop and os.getppid() == parent:
        active = [j for j in board.registered() if answers.get(j, [RUNNING])[0] == RUNNING]
        if active:
            for jobid, (word, reason) in query(active).items():
                answers[jobid] = [word, reason]
            print(f"{time.strftime('%H:%M:%S')} polled {len(active)} job(s)", file=log)
        board.write(answers)
        deadline = time.time() + interval
        while not stop and time.time() < deadline and os.getppid() == parent:
            time.sleep(min(0.2, interval))
    active = [j for j in board.registered() if answers.get(j, [RUNNING])[0] == RUNNING]
    if active:
        print(f"stopping ({'signal ' + str(stop[0]) if stop else 'Snakemake gone'}): qdel {' '.join(active)}",
              file=log)
        delete(active)
    return 0


# ------------------------------------------------------------------------------------------------- cli


def register(sub) -> None:
    pbs = sub.add_parser("pbs", help="PBS Pro submit/status/cancel/sidecar for Snakemake's cluster-generic executor")
    cmds = pbs.add_subparsers(dest="pbs_cmd", required=True)

    s = cmds.add_parser("submit", help="qsub a Snakemake job script; prints only the job id")
    s.add_argument("-A", "--account", help="project (-A); default: resource account, then $EVOTRACE_ACCOUNT")
    s.add_argument("-q", "--queue", help="queue; default: resource queue, then $EVOTRACE_QUEUE, then auto")
    s.add_argument("-n", "--nodes", type=int)
    s.add_argument("-t", "--tasks", type=int, help="MPI ranks; raises nodes to ceil(tasks/ppn)")
    s.add_argument("--ppn", type=int, help="ranks per node (4 = one per A100 on Polaris)")
    s.add_argument("-w", "--runtime", "--walltime", dest="runtime", help="minutes (Snakemake runtime) or HH:MM:SS")
    s.add_argument("--min-walltime", type=float, help="minutes; default: the queues file's minimum")
    s.add_argument("-f", "--filesystems", help="default: resource, then $EVOTRACE_FILESYSTEMS, then home:eagle")
    s.add_argument("-p", "--place")
    s.add_argument("--system", help="select=N:system=... (default polaris); empty to leave out")
    s.add_argument("-N", "--name", help="job name; default smk-<rule>")
    s.add_argument("-o", "--log-dir", default="logs/pbs", help="joined stdout/stderr, written while the job runs")
    s.add_argument("--extra", help="further qsub arguments")
    s.add_argument("--dry-run", action="store_true", help="print the qsub command instead of running it")
    s.add_argument("jobscript")
    s.set_defaults(func=submit)

    st = cmds.add_parser("status", help="print running, success or failed; always exits 0")
    st.add_argument("jobid")
    st.set_defaults(func=status)

    c = cmds.add_parser("cancel", help="qdel the given jobs (in the background, with retries)")
    c.add_argument("--wait", action="store_true", help="delete in the foreground")
    c.add_argument("jobids", nargs="*")
    c.set_defaults(func=cancel)

    sc = cmds.add_parser("sidecar", help="poll PBS once per cycle for all jobs of a Snakemake run")
    sc.add_argument("--dir", help="its folder; default .snakemake/pbs/<pid>")
    sc.set_defaults(func=sidecar)

    q = cmds.add_parser("queue", help="print the queue a job of N nodes and M minutes goes to")
    q.add_argument("--nodes", type=int, default=1)
    q.add_argument("--runtime", default="30", help="minutes or HH:MM:SS")
    q.add_argument("--queue", help="a forced queue to check")
    q.set_defaults(func=_queue_cmd)


def _queue_cmd(args) -> int:
    try:
        queue, minutes = plan(args.nodes, _minutes(args.runtime), args.queue)
    except QueueError as err:
        print(err, file=sys.stderr)
        return 1
    print(queue, walltime(minutes))
    return 0


def main(argv=None) -> int:
    """`python -m evotrace.pbs ...`: the same commands without loading the other stages."""
    import argparse

    parser = argparse.ArgumentParser(prog="evotrace")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pbs", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
