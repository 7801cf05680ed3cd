"""DeepHyper's stock RegularizedEvolution on the same MPI evaluator and workload as `evotrace search`
(run under mpiexec by bench_search.py; prints one JSON line on rank 0)."""

import json
import sys
import time


def run(job, seconds=0.0):
    if seconds:
        time.sleep(seconds)
    return sum(job.parameters[f"x{i}"] for i in range(6)) / 24.0


def main():
    from deephyper.evaluator import Evaluator
    from deephyper.evaluator.storage import MemoryStorage
    from deephyper.hpo import HpProblem, RegularizedEvolution
    from mpi4py import MPI

    if not MPI.Is_initialized():
        MPI.Init_thread()
    n, p, s, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    problem = HpProblem()
    for i in range(6):
        problem.add_hyperparameter((0, 4), f"x{i}")
    evaluator = Evaluator.create(run, method="mpicomm",
                                 method_kwargs={"storage": MemoryStorage(), "run_function_kwargs": {"seconds": seconds}})
    with evaluator as ev:
        if ev.is_master:
            search = RegularizedEvolution(problem, random_state=1, log_dir=sys.argv[5], population_size=p,
                                          sample_size=s, checkpoint_history_to_csv=False)
            results = search.search(ev, max_evals=n, max_evals_strict=True)
            t = results["m:timestamp_gather"].sort_values().to_numpy()
            workers = ev.num_workers
            per_candidate = (t[-1] - t[workers]) / (len(t) - 1 - workers)
            print(json.dumps({"per_candidate": per_candidate, "n": len(results)}), flush=True)


if __name__ == "__main__":
    main()
