"""Peer for the SQL benchmark: run one query with DuckDB over Parquet files and print CSV.

Usage: sql_duckdb.py PARQUET_DIR QUERY

Every PARQUET_DIR/NAME.parquet is a view named NAME, so QUERY uses the table names of a
rankdistill store. DuckDB uses all cores, as DataFusion does.
"""

import csv
import pathlib
import sys

import duckdb


def main() -> None:
    folder, query = pathlib.Path(sys.argv[1]), sys.argv[2]
    connection = duckdb.connect()
    for path in sorted(folder.glob("*.parquet")):
        connection.execute(f"CREATE VIEW {path.stem} AS SELECT * FROM read_parquet('{path}')")
    result = connection.execute(query)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([column[0] for column in result.description])
    writer.writerows(result.fetchall())


if __name__ == "__main__":
    main()
