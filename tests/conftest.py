"""Helpers shared by the research-question tests (tests/test_rq*.py)."""

import pytest

from evotrace.analysis.command import read_tables, write_table


@pytest.fixture(scope="session")
def via_csv():
    """Tables reach the figures as CSV files: via_csv(tables, folder) writes each table to folder/<name>.csv
    and returns what read_tables gets back, so that figures are drawn from what survives the round trip."""

    def through(tables, folder):
        for name, df in tables.items():
            write_table(df, folder / f"{name}.csv")
        return read_tables(folder)

    return through
