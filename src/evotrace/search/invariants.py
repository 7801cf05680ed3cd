"""Algorithm 1's invariants, checked on a written trace. Used by the tests; a user can call
`algorithm1_violations` on any trace, including one from another implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd


def algorithm1_violations(trace: pd.DataFrame, population: int, sample: int, candidates: int | None = None,
                          stage_boundary: str = "wait") -> list[str]:
    """Every way `trace` (one run) departs from Algorithm 1; empty when it follows it exactly. Stage 1 is
    the first jobs; with the "wait" boundary it holds exactly p successes (plus the failures they
    replaced), with "random" at least p; every stage-2 tournament samples a full population of p."""
    problems = []
    t = trace.sort_values("job_id").reset_index(drop=True)
    n = len(t)
    if candidates is not None and n != candidates:
        problems.append(f"{n} candidates, expected {candidates}")
    if not (t["job_id"].to_numpy() == np.arange(n)).all():
        problems.append("job_id is not 0..N-1")
    stage1 = t["stage"] == 1
    ok = t["status"] == "ok"
    k1 = int(stage1.sum())
    if not stage1.iloc[:k1].all():
        problems.append("stage-1 candidates are not the first jobs")
    stage1_ok = int((stage1 & ok).sum())
    if k1 < n:  # stage 2 began: the population was full
        if stage_boundary == "wait" and stage1_ok != population:
            problems.append(f"{stage1_ok} successful stage-1 candidates, expected exactly p={population}")
        elif stage1_ok < population:
            problems.append(f"{stage1_ok} successful stage-1 candidates, expected at least p={population}")
    elif stage_boundary == "wait" and stage1_ok > population:
        problems.append(f"{stage1_ok} successful stage-1 candidates, expected at most p={population}")
    if t.loc[~ok, "insert_seq"].notna().any():
        problems.append("a failed candidate entered the population")
    seqs = t.loc[ok, "insert_seq"].dropna().astype(int).sort_values().to_numpy()
    if not (seqs == np.arange(len(seqs))).all():
        problems.append("insert_seq of completed candidates is not 0..k-1")
    by_id = t.set_index("job_id")
    insert_of = by_id["insert_seq"]
    members_by_seq = t.loc[ok].set_index(t.loc[ok, "insert_seq"].astype(int))["quality"].sort_index()
    for row in t.loc[~stage1].itertuples(index=False):
        where = f"job {row.job_id}"
        if pd.isna(row.parent_id) or pd.isna(row.mutation_pos):
            problems.append(f"{where}: stage 2 without parent or mutation position")
            continue
        parent = int(row.parent_id)
        if by_id.at[parent, "status"] != "ok":
            problems.append(f"{where}: parent {parent} failed")
            continue
        child, mother = np.asarray(row.arch_seq), np.asarray(by_id.at[parent, "arch_seq"])
        diff = np.flatnonzero(child != mother)
        if diff.tolist() != [int(row.mutation_pos)]:
            problems.append(f"{where}: differs from parent {parent} at {diff.tolist()}, mutation_pos {int(row.mutation_pos)}")
        version = int(row.population_version)
        if version < population:
            problems.append(f"{where}: sampled from a population of {version} < p={population} members")
            continue
        lo = version - population
        pi = insert_of.at[parent]
        if not lo <= pi < version:
            problems.append(f"{where}: parent insert_seq {pi} outside the population [{lo}, {version})")
            continue
        members = members_by_seq.loc[lo:version - 1]
        if (members <= by_id.at[parent, "quality"]).sum() < sample:
            problems.append(f"{where}: parent {parent} is among the s-1={sample - 1} worst of its population")
    return problems
