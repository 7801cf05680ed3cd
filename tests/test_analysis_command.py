"""`evotrace analyze`, `evotrace figure` and `evotrace summary` end to end on a small consolidated trace,
with stand-in research-question modules so that the commands are tested apart from the analyses."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evotrace.analysis.command import read_table, write_table
from evotrace.analysis.common import arch_matrix, ok_candidates, population_members, prefix_ids, prefix_keys, seq_label
from evotrace.cli import main
from evotrace.consolidate import consolidate

from test_consolidate import candidates_table, reads_table

SEEN = {}


def prefixes(candidates, tensor_reads, params):
    SEEN["params"] = params
    keys = prefix_keys(candidates["arch_seq"], 2)
    out = candidates.assign(key=keys, prefix_id=prefix_ids(keys)).groupby(["run", "prefix_id"], as_index=False).agg(
        count=("job_id", "size"), jobs=("job_id", list))
    out["prefix"] = [list(map(int, s[:2])) for s in candidates.groupby(["run", keys])["arch_seq"].first()]
    return out


def reads(candidates, tensor_reads, params):
    return tensor_reads.groupby("run", as_index=False).agg(reads=("job_id", "size"))


def bar(tables, params):
    t = tables["prefixes"]
    SEEN["figure_tables"], SEEN["figure_params"] = tables, params
    return go.Figure(go.Bar(x=[seq_label(p) for p in t["prefix"]], y=t["count"]))


@pytest.fixture
def study(tmp_path, monkeypatch):
    seqs = [[0, 1, 2], [0, 1, 0], [2, 2, 2], [0, 1, 1], [0, 2, 2], [0, 1, 2]]
    ca = candidates_table("a", seqs=seqs)
    cb = candidates_table("b", transfer=False).set_column(13, "status", pa.array(["ok"] * 5 + ["failed"]))
    cb = cb.set_column(12, "quality", pa.array([0.5, 0.9, 0.7, 0.8, 0.6, None]))
    paths = []
    for run, c, r in (("a", ca, reads_table("a")), ("b", cb, reads_table("b").slice(0, 0))):
        pq.write_table(c, tmp_path / f"{run}_c.parquet")
        pq.write_table(r, tmp_path / f"{run}_r.parquet")
        paths.append((tmp_path / f"{run}_c.parquet", tmp_path / f"{run}_r.parquet"))
    consolidate([c for c, _ in paths], [r for _, r in paths], tmp_path / "traces")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": "t", "analysis": {"prefix_len": 2}, "runs": {}}))
    analysis = types.ModuleType("evotrace.analysis.rq3")
    analysis.TABLES = {"prefixes": prefixes, "reads": reads}
    figures = types.ModuleType("evotrace.figures.rq3")
    figures.FIGURES, figures.CAPTIONS = {"bar": bar}, {"bar": "bar.rst"}
    monkeypatch.setitem(sys.modules, "evotrace.analysis.rq3", analysis)
    monkeypatch.setitem(sys.modules, "evotrace.figures.rq3", figures)
    return tmp_path, config


def test_analyze_and_figure(study):
    tmp, config = study
    tables = tmp / "tables" / "rq3"
    common = ["--traces-dir", str(tmp / "traces"), "--config-json", str(config)]
    assert main(["analyze", "--rq", "rq3", *common, "--out-dir", str(tables)]) == 0
    assert sorted(p.name for p in tables.iterdir()) == ["prefixes.csv", "reads.csv"]
    assert SEEN["params"]["analysis"] == {"prefix_len": 2}
    assert SEEN["params"]["runs"]["a"]["candidates"] == 6 and SEEN["params"]["runs"]["b"]["transfer"] is False
    t = read_table(tables / "prefixes.csv")
    a = t[t["run"] == "a"].sort_values("prefix_id")
    assert a["prefix"].tolist() == [[0, 1], [0, 2], [2, 2]] and a["count"].tolist() == [4, 1, 1]
    assert a["jobs"].iloc[0] == [0, 1, 3, 5]
    assert read_table(tables / "reads.csv").to_dict("records") == [{"run": "a", "reads": 6}]

    assert main(["figure", "--rq", "rq3", "--tables-dir", str(tables), *common, "--out-dir", str(tmp / "fig"),
                 "--formats", "html"]) == 0
    assert [p.name for p in (tmp / "fig").iterdir()] == ["bar.html"]
    assert set(SEEN["figure_tables"]) == {"prefixes", "reads"} and SEEN["figure_params"]["runs"] == SEEN["params"]["runs"]
    assert "0-1" in (tmp / "fig" / "bar.html").read_text()


def test_analyze_subset_and_errors(study, capsys):
    tmp, config = study
    common = ["--traces-dir", str(tmp / "traces"), "--config-json", str(config)]
    out = tmp / "subset"
    assert main(["analyze", "--rq", "rq3", *common, "--out-dir", str(out), "--tables", "reads"]) == 0
    assert [p.name for p in out.iterdir()] == ["reads.csv"]
    assert main(["analyze", "--rq", "rq3", *common, "--out-dir", str(out), "--tables", "nope"]) == 1
    assert "rq3 has no table(s) nope" in capsys.readouterr().err
    assert main(["figure", "--rq", "rq3", "--name", "bar", "nope", "--tables-dir", str(out), *common,
                 "--out-dir", str(tmp / "x")]) == 1
    assert "rq3 has no figure(s) nope" in capsys.readouterr().err
    assert not (tmp / "x").exists()
    assert main(["analyze", "--rq", "rq3", "--traces-dir", str(tmp / "missing"), "--config-json", str(config), "--out-dir", str(out)]) == 1
    assert "candidates.parquet: no such file" in capsys.readouterr().err


def test_summary(study):
    tmp, _ = study
    out = tmp / "summary.csv"
    assert main(["summary", "--traces-dir", str(tmp / "traces"), "--out", str(out)]) == 0
    s = pd.read_csv(out).set_index("run")
    assert s.loc["a", "candidates"] == 6 and s.loc["b", "failed"] == 1 and s.loc["b", "ok"] == 5
    assert s.loc["a", "best_quality"] == pytest.approx(0.75) and s.loc["a", "time_to_best_seconds"] == 7.0
    assert s.loc["b", "best_quality"] == pytest.approx(0.9) and s.loc["b", "time_to_best_seconds"] == 3.0
    assert s.loc["a", "wall_seconds"] == 7.0 and s.loc["a", "candidates_per_minute"] == pytest.approx(6 / 7 * 60)
    assert s.loc["a", "fraction_transferred"] == 0.5 and s.loc["b", "fraction_transferred"] == 0
    assert s.loc["a", "mean_prefix_len"] == 1 and s.loc["a", "bytes_read"] == 300 and s.loc["a", "bytes_written"] == 1800
    assert s.loc["a", "cache_hit_rate"] == 0.5 and np.isnan(s.loc["b", "cache_hit_rate"])


def test_list_columns_round_trip(tmp_path):
    df = pd.DataFrame({"seq": [[0, 1], np.array([2, 3]), (4,)], "meta": [{"k": 1}, None, {"k": 2}],
                       "text": ["[not json", "x", "y"], "n": [1, 2, 3]})
    write_table(df, tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv")
    assert back["seq"].tolist() == [[0, 1], [2, 3], [4]]
    assert back["meta"].iloc[0] == {"k": 1} and pd.isna(back["meta"].iloc[1])
    assert back["text"].tolist() == ["[not json", "x", "y"] and back["n"].tolist() == [1, 2, 3]


def test_common_primitives(tmp_path):
    c = candidates_table("a", seqs=[[1, 0, 2], [0, 4, 4], [1, 0, 1], [0, 4, 0], [3, 3, 3], [1, 0, 2]]).to_pandas()
    c.loc[2, ["status", "insert_seq"]] = ["failed", None]
    assert len(ok_candidates(c)) == 5
    assert population_members(c, "a", 5, 3)["job_id"].tolist() == [3, 4]
    assert population_members(c, "a", 2, 3)["job_id"].tolist() == [0, 1]
    m = arch_matrix(c)
    assert m.shape == (6, 3) and m.dtype == np.int64 and m[1].tolist() == [0, 4, 4]
    keys = prefix_keys(c["arch_seq"], 2)
    assert keys.index.equals(c.index) and keys[0] == keys[2] == keys[5] != keys[1]
    assert prefix_ids(keys).tolist() == [1, 0, 1, 0, 2, 1]
    ragged = pd.Series([np.array([1, 2]), np.array([1, 2, 0]), np.array([0, 9, 9])])
    assert prefix_ids(prefix_keys(ragged, 3)).tolist() == [1, 2, 0]
    wide = np.array([[1] * 40, [1] * 39 + [2], [0] * 40])
    assert prefix_ids(prefix_keys(wide, 40)).tolist() == [1, 2, 0]
    assert seq_label(m[0]) == "1-0-2"
