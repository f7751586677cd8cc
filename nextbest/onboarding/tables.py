"""Load a bank's raw files into DuckDB, typed as the onboarding config says, then build its derived tables.

DuckDB because the bank's files are read once per build and every later step (derived SQL, as-of joins, windowed
aggregates) is relational: one in-process engine, no copies through pandas. Files are read as text and cast
column by column, so a malformed value fails with the table and column named instead of being silently inferred
into another type. A file without an id gets a generated row key, one without a date a constant extract date
(`TableConfig.row_key`, `extract_date`). All timestamps are naive UTC `TIMESTAMP`s inside DuckDB; they become
tz-aware UTC in the parquet feature tables Feast reads.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from nextbest.errors import ConfigError, DataError
from nextbest.onboarding.config import OnboardingConfig, TableConfig

if TYPE_CHECKING:
    from nextbest.erasure import Tombstones

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


def resolve_file(data_dir: Path, file: str) -> Path:
    """A table's file: absolute as written, or relative to the project's data_dir."""
    path = Path(file)
    return path if path.is_absolute() else data_dir / path


def load_table(
    con: duckdb.DuckDBPyConnection, name: str, table: TableConfig, data_dir: Path, extract_day: date | None = None
) -> int:
    """Create table `name` in `con` from the file; returns its row count. Raises DataError on bad files/values.

    A `row_key` column is generated as 1, 2, ... in file order (the file has no id); an `extract_date` column holds
    `extract_day` at 00:00 on every row (the file has no date)."""
    path = resolve_file(data_dir, table.file)
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
    _add_generated(con, name, table, extract_day)
    rows = con.execute(f"SELECT count(*) FROM {ident(name)}").fetchone()
    n = int(rows[0]) if rows else 0
    logger.debug("loaded %s: %d rows from %s", name, n, path)
    return n


def _add_generated(con: duckdb.DuckDBPyConnection, name: str, table: TableConfig, extract_day: date | None) -> None:
    """The generated columns of a file without an id or a date (in front of the file's own columns)."""
    generated = []
    if table.row_key is not None:
        # rowid follows insertion order, which DuckDB keeps as the file's order (preserve_insertion_order).
        generated.append(f"CAST(rowid + 1 AS BIGINT) AS {ident(table.row_key)}")
    if table.extract_date is not None:
        if extract_day is None:
            raise ConfigError(f"table {name!r}: extract_date needs the extract's end (data_end)")
        generated.append(f"TIMESTAMP {literal(extract_day.isoformat())} AS {ident(table.extract_date)}")
    if generated:
        con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT {', '.join(generated)}, * FROM {ident(name)}")


def connect(config: OnboardingConfig, erased: Tombstones | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding every table and derived table of the config (derived built in order).

    `erased`: the project's tombstones (`nextbest.erasure`); rows holding an erased key are deleted from the bank's
    tables as they are loaded, before anything is derived from them, so no feature, label or training row of an
    erased customer (or of their contacts, loans...) is rebuilt from files the bank has not cleaned yet.
    """
    con = duckdb.connect()
    for name, table in config.tables.items():
        load_table(con, name, table, config.data_dir, extract_day=config.extract_day)
    if erased:
        exclude_erased(con, list(config.tables), erased)
    for name, sql in config.derived.items():
        try:
            con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS {sql}")
        except duckdb.Error as exc:
            raise ConfigError(f"derived table {name!r}: its SQL failed: {exc}") from exc
    if erased:
        exclude_erased(con, list(config.derived), erased)
    _check_entities(con, config)
    return con


def exclude_erased(con: duckdb.DuckDBPyConnection, tables: list[str], erased: Tombstones) -> dict[str, int]:
    """Delete, from each of `tables`, the rows whose column named like an erased key column holds an erased key;
    rows deleted per table (each table's distinct keys are hashed once)."""
    removed: dict[str, int] = {}
    columns = set(erased.columns())
    for table in tables:
        for column in sorted(columns & set(columns_of(con, table))):
            distinct = [r[0] for r in con.execute(f"SELECT DISTINCT {ident(column)} FROM {ident(table)}").fetchall()]
            gone = erased.matching(column, distinct)
            if not gone:
                continue
            values = ", ".join(literal(v) for v in sorted(gone, key=str))
            before = _count(con, table)
            con.execute(f"DELETE FROM {ident(table)} WHERE {ident(column)} IN ({values})")
            removed[table] = removed.get(table, 0) + before - _count(con, table)
    if removed:
        logger.info("left out the rows of erased keys: %s", removed)
    return removed


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()
    return int(row[0]) if row else 0


def related_keys(config: OnboardingConfig, entity: str, key: object) -> dict[str, set[Any]]:
    """The keys of the other entities that belong to one entity: those whose entity table has a column named like
    its key, with that key (a customer's contacts, an account's loans); key column -> values."""
    con = connect(config)
    try:
        own = config.entities[entity].key
        out: dict[str, set[Any]] = {}
        for name, other in config.entities.items():
            if name == entity or other.key == own or own not in columns_of(con, other.table):
                continue
            rows = con.execute(
                f"SELECT DISTINCT {ident(other.key)} FROM {ident(other.table)} "
                f"WHERE CAST({ident(own)} AS VARCHAR) = {literal(str(key))}"
            ).fetchall()
            out.setdefault(other.key, set()).update(r[0] for r in rows if r[0] is not None)
        return out
    finally:
        con.close()


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
