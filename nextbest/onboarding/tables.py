"""Load a bank's raw files into DuckDB, typed as the onboarding config says, then build its derived tables.

DuckDB because the bank's files are read once per build and every later step (derived SQL, as-of joins, windowed
aggregates) is relational: one in-process engine, no copies through pandas. Files are read as text and cast
column by column, so a malformed value fails with the table and column named instead of being silently inferred
into another type. All timestamps are naive UTC `TIMESTAMP`s inside DuckDB; they become tz-aware UTC in the
parquet feature tables Feast reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pandas as pd

from nextbest.errors import ConfigError, DataError
from nextbest.onboarding.config import OnboardingConfig, TableConfig

logger = logging.getLogger(__name__)

_SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN"}
#: An entity key's SQL type by its `key_type` (int64 keys, or strings such as 'C-000123').
KEY_SQL_TYPES = {"int": "BIGINT", "str": "VARCHAR"}


def key_column(values: pd.Series, key_type: str) -> pd.Series:
    """An entity-key column as the feature tables, training frames and Feast carry it: int64, or Python strings."""
    return values.astype("int64") if key_type == "int" else values.astype(str).astype(object)


def ident(name: str) -> str:
    """A quoted SQL identifier (table and column names come from user config)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """A SQL literal for a config value (strings quoted and escaped)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _cast_expr(column: str, kind: str, fmt: str | None, na_values: list[str]) -> str:
    col = ident(column)
    missing = [""] + na_values
    cleaned = f"CASE WHEN trim({col}) IN ({', '.join(literal(v.strip()) for v in missing)}) THEN NULL ELSE {col} END"
    if kind in ("date", "datetime"):
        if fmt:
            return f"CAST(strptime(trim({cleaned}), {literal(fmt)}) AS TIMESTAMP)"
        return f"CAST(trim({cleaned}) AS TIMESTAMP)"
    if kind == "str":
        return cleaned
    return f"CAST(trim({cleaned}) AS {_SQL_TYPES[kind]})"


def _resolve(data_dir: Path, file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else data_dir / path


def load_table(con: duckdb.DuckDBPyConnection, name: str, table: TableConfig, data_dir: Path) -> int:
    """Create table `name` in `con` from the file; returns its row count. Raises DataError on bad files/values."""
    path = _resolve(data_dir, table.file)
    if not path.exists():
        raise DataError(f"table {name!r}: file {path} not found (check data_dir / file in the onboarding config)")
    if table.format == "csv":
        reader = f"read_csv({literal(str(path))}, delim={literal(table.separator)}, header=true, all_varchar=true)"
    else:
        reader = f"read_parquet({literal(str(path))})"
    available = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    missing = [c for c in table.columns if c not in available]
    if missing:
        raise DataError(f"table {name!r}: columns {missing} not in {path.name}; it has {available}")
    if table.format == "csv":
        selects = [
            f"{_cast_expr(c, kind, table.date_formats.get(c), table.na_values)} AS {ident(c)}"
            for c, kind in table.columns.items()
        ]
    else:
        selects = [
            f"CAST({ident(c)} AS {'TIMESTAMP' if kind in ('date', 'datetime') else _SQL_TYPES[kind]}) AS {ident(c)}"
            for c, kind in table.columns.items()
        ]
    try:
        con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT {', '.join(selects)} FROM {reader}")
    except duckdb.Error as exc:
        raise DataError(f"table {name!r} ({path.name}): a value does not match its declared type: {exc}") from exc
    rows = con.execute(f"SELECT count(*) FROM {ident(name)}").fetchone()
    n = int(rows[0]) if rows else 0
    logger.debug("loaded %s: %d rows from %s", name, n, path)
    return n


def connect(config: OnboardingConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding every table and derived table of the config (derived built in order)."""
    con = duckdb.connect()
    for name, table in config.tables.items():
        load_table(con, name, table, config.data_dir)
    for name, sql in config.derived.items():
        try:
            con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS {sql}")
        except duckdb.Error as exc:
            raise ConfigError(f"derived table {name!r}: its SQL failed: {exc}") from exc
    _check_entities(con, config)
    return con


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a loaded table."""
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {ident(table)}").fetchall()}


def _check_entities(con: duckdb.DuckDBPyConnection, config: OnboardingConfig) -> None:
    for name, ent in config.entities.items():
        cols = columns_of(con, ent.table)
        for needed in [ent.key] + ([ent.valid_from] if ent.valid_from else []):
            if needed not in cols:
                raise ConfigError(f"entity {name!r}: column {needed!r} not in table {ent.table!r} ({sorted(cols)})")
        if ent.key_type == "int" and "INT" not in cols[ent.key]:
            raise ConfigError(
                f"entity {name!r}: key {ent.key!r} must be an integer column, is {cols[ent.key]} "
                "(declare `key_type: str` for text keys)"
            )
        if ent.key_type == "str" and cols[ent.key] != "VARCHAR":
            raise ConfigError(
                f"entity {name!r}: key_type str needs a text key column; {ent.key!r} is {cols[ent.key]} "
                "(declare it `str` in its table's columns)"
            )
        row = con.execute(
            f"SELECT count(*) - count(DISTINCT {ident(ent.key)}), count(*) - count({ident(ent.key)}) "
            f"FROM {ident(ent.table)}"
        ).fetchone()
        dupes, nulls = (int(row[0]), int(row[1])) if row else (0, 0)
        if dupes or nulls:
            raise DataError(
                f"entity {name!r}: table {ent.table!r} must have one row per {ent.key!r} "
                f"({dupes} duplicate and {nulls} missing keys)"
            )
