#!/usr/bin/env python3
"""Checks `collector export` files with the readers people use: pyarrow, pandas and DuckDB.

    export_check.py LEDGER.db JOBS.parquet JOBS.csv JOBS.jsonl

Compares against the ledger itself (Python's sqlite3): row count, column types, a few values of
a few jobs, and one group-by (jobs per account) computed by DuckDB over the Parquet file.
Needs pyarrow, pandas and duckdb (collector/tests/export.rs installs them in a venv).
Exits non-zero with a message on the first mismatch.
"""
import json
import sqlite3
import sys

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def fail(msg):
    print(f"export_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    db, parquet, csv, jsonl = sys.argv[1:5]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    n = con.execute("SELECT count(*) FROM jobs").fetchone()[0]

    table = pq.read_table(parquet)
    if table.num_rows != n:
        fail(f"parquet has {table.num_rows} rows, the ledger {n}")
    want = {
        "cluster": pa.string(),
        "job_id": pa.int64(),
        "array_job_id": pa.int64(),
        "user": pa.string(),
        "start": pa.timestamp("ms", tz="UTC"),
        "end": pa.timestamp("ms", tz="UTC"),
        "elapsed_s": pa.int64(),
        "state": pa.string(),
        "nnodes": pa.int64(),
        "ncpus": pa.int64(),
        "cpu_seconds": pa.float64(),
        "max_rss_kib": pa.int64(),
        "modules": pa.list_(pa.string()),
        "facts": pa.list_(pa.string()),
        "packages": pa.list_(pa.string()),
    }
    for name, typ in want.items():
        got = table.schema.field(name).type
        # pyarrow names the list's item field 'element' (Parquet's) or 'item': same type otherwise.
        if got != typ and not (pa.types.is_list(got) and pa.types.is_list(typ) and got.value_type == typ.value_type):
            fail(f"column {name} is {got}, expected {typ}")

    df = table.to_pandas()
    rows = con.execute(
        "SELECT id, job_id, user, account, start, end, state, ncpus, cpu_seconds FROM jobs ORDER BY id LIMIT 3"
    ).fetchall()
    for i, (rid, job_id, user, account, start, end, state, ncpus, cpu) in enumerate(rows):
        r = df.iloc[i]
        if int(r["job_id"]) != job_id or r["user"] != user or r["account"] != account or r["state"] != state:
            fail(f"row {i}: {r.to_dict()} vs ledger {(job_id, user, account, state)}")
        if int(r["start"].timestamp()) != start or int(r["end"].timestamp()) != end:
            fail(f"row {i}: times {r['start']} {r['end']} vs {start} {end}")
        if int(r["elapsed_s"]) != end - start or int(r["ncpus"]) != ncpus or abs(float(r["cpu_seconds"]) - cpu) > 1e-6:
            fail(f"row {i}: elapsed/ncpus/cpu {r['elapsed_s']} {r['ncpus']} {r['cpu_seconds']}")
        mods = sorted(
            (name if version == "" else f"{name}/{version}")
            for name, version in con.execute(
                # Schema 3+: a job's modules are its module set's members.
                "SELECT m.name, m.version FROM jobs j JOIN module_set_members s ON s.module_set = j.module_set "
                "JOIN modules m ON m.id = s.module WHERE j.id = ?",
                (rid,),
            )
        )
        if list(r["modules"]) != mods:
            fail(f"row {i}: modules {list(r['modules'])} vs {mods}")
        pkgs = sorted(
            (name if version == "" else f"{name}/{version}")
            for name, version in con.execute(
                # Schema 6+: a job's Python packages are its package set's members.
                "SELECT p.name, p.version FROM jobs j JOIN py_package_set_members s ON s.package_set = j.py_set "
                "JOIN py_packages p ON p.id = s.package WHERE j.id = ?",
                (rid,),
            )
        )
        if list(r["packages"]) != pkgs:
            fail(f"row {i}: packages {list(r['packages'])} vs {pkgs}")

    by_sqlite = dict(con.execute("SELECT account, count(*) FROM jobs GROUP BY account").fetchall())
    by_duck = dict(duckdb.sql(f"SELECT account, count(*) FROM read_parquet('{parquet}') GROUP BY account").fetchall())
    if by_sqlite != by_duck:
        fail(f"jobs per account: sqlite {by_sqlite} duckdb {by_duck}")

    # Jobs that imported numpy, any version: the list column as DuckDB reads it.
    numpy_sqlite = con.execute(
        "SELECT count(*) FROM jobs WHERE py_set IN (SELECT s.package_set FROM py_package_set_members s "
        "JOIN py_packages p ON p.id = s.package WHERE p.name = 'numpy')"
    ).fetchone()[0]
    numpy_duck = duckdb.sql(
        f"SELECT count(DISTINCT (cluster, job_id)) FROM (SELECT cluster, job_id, unnest(packages) AS p "
        f"FROM read_parquet('{parquet}')) WHERE p = 'numpy' OR p LIKE 'numpy/%'"
    ).fetchall()[0][0]
    if numpy_sqlite != numpy_duck:
        fail(f"jobs with numpy: sqlite {numpy_sqlite} duckdb {numpy_duck}")

    c = pd.read_csv(csv)
    if len(c) != n or list(c.columns) != list(table.schema.names):
        fail(f"csv: {len(c)} rows, columns {list(c.columns)}")
    lines = [json.loads(l) for l in open(jsonl)]
    if len(lines) != n or lines[0]["job_id"] != rows[0][1] or not isinstance(lines[0]["modules"], list):
        fail(f"jsonl: {len(lines)} rows, first {lines[0] if lines else None}")
    print(f"export_check: ok: {n} jobs ({numpy_duck} with numpy); parquet types, values, DuckDB group-by and packages, CSV and JSON Lines agree")


if __name__ == "__main__":
    main()
