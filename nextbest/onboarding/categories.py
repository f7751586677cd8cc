"""Text categories inferred from the bank's data and frozen, so one list serves the feature tables, the Feast schema,
every model trained on them and the online features they are served from.

A one-hot needs its values before anything is built. Listing them by hand (56 values for one table) is what a
config may still do; otherwise (`categories: auto`, a text attribute without `categories`, or a `by:` split without
`values`) the first build infers them: the `max_categories` most frequent values of the source column (ties by
value), written to `<project>/offline/categories.json` beside the feature tables. Every later build, apply,
training set and retrain reads that file instead of inferring again: a value that appears after it was written
(a new product code, a typo at serving time) goes to the `<name>_other` feature, never to a column no model knows.
Delete the file to infer again (the next build rewrites the tables and the schema; retrain the models after).

`resolved(config, frozen)` is the config with every inferred list written in, as if typed by hand (with
`other: true`); the rest of `nextbest.onboarding` works on resolved configs only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from nextbest.onboarding.config import (
    AUTO,
    Aggregation,
    AttributeFeature,
    FeatureViewConfig,
    OnboardingConfig,
    sanitize,
)
from nextbest.onboarding.tables import columns_of, ident

if TYPE_CHECKING:
    import duckdb

    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

FROZEN_FILE = "categories.json"
Frozen = dict[str, list[str]]


def _attr_key(view: FeatureViewConfig, attr: AttributeFeature) -> str:
    return f"{view.name}.{attr.name}"


def _agg_key(view: FeatureViewConfig, agg: Aggregation) -> str:
    return f"{view.name}.{agg.name}.by"


def _wanted(con: duckdb.DuckDBPyConnection, config: OnboardingConfig) -> list[tuple[str, str, str, int]]:
    """(key, source table, column, max values) of every category list the config leaves to the data."""
    wanted = []
    for view in config.feature_views:
        cols = columns_of(con, view.source)
        for attr in view.attributes:
            text = attr.transform == "value" and cols.get(attr.column) == "VARCHAR"
            if attr.categories == AUTO or (attr.categories is None and text):
                wanted.append((_attr_key(view, attr), view.source, attr.column, attr.max_categories))
        for agg in view.aggregations:
            if agg.by is not None and agg.by.values == AUTO:
                wanted.append((_agg_key(view, agg), view.source, agg.by.column, agg.by.max_categories))
    return wanted


def infer(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, known: Frozen | None = None) -> Frozen:
    """The category lists the config leaves to the data: `known` ones kept as they are, the others inferred."""
    out: Frozen = {}
    for key, source, column, limit in _wanted(con, config):
        if known and key in known:
            out[key] = known[key]
            continue
        rows = con.execute(
            f"SELECT CAST({ident(column)} AS VARCHAR) AS v, count(*) AS n FROM {ident(source)} "
            f"WHERE {ident(column)} IS NOT NULL GROUP BY v ORDER BY n DESC, v"
        ).fetchall()
        out[key] = _usable([str(r[0]) for r in rows], limit)
        logger.info("categories of %s: %d of %d values kept (the rest -> _other)", key, len(out[key]), len(rows))
    return out


def _usable(values: list[str], limit: int) -> list[str]:
    """The first `limit` values whose feature-name parts are distinct and not the `_other` bucket's."""
    kept, names = [], {"other"}
    for value in values:
        name = sanitize(value)
        if name in names:
            continue
        kept.append(value)
        names.add(name)
        if len(kept) == limit:
            break
    return kept


def resolved(config: OnboardingConfig, frozen: Frozen | None) -> OnboardingConfig:
    """The config with the frozen lists written in (each with an `_other` feature); unchanged without any."""
    if not frozen:
        return config
    views = []
    for view in config.feature_views:
        attributes = [
            attr.model_copy(update={"categories": frozen[key], "other": True})
            if (key := _attr_key(view, attr)) in frozen
            else attr
            for attr in view.attributes
        ]
        aggregations = [
            agg.model_copy(update={"by": agg.by.model_copy(update={"values": frozen[key], "other": True})})
            if agg.by is not None and (key := _agg_key(view, agg)) in frozen
            else agg
            for agg in view.aggregations
        ]
        views.append(view.model_copy(update={"attributes": attributes, "aggregations": aggregations}))
    return config.model_copy(update={"feature_views": views})


def frozen_path(offline_dir: Path) -> Path:
    return Path(offline_dir) / FROZEN_FILE


def read_frozen(offline_dir: Path) -> Frozen | None:
    """The frozen lists of a project's feature tables, None before its first build."""
    path = frozen_path(offline_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def freeze(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, offline_dir: Path) -> OnboardingConfig:
    """At a build: the lists already frozen, plus any the config newly leaves to the data, written back; the config
    resolved with them."""
    known = read_frozen(offline_dir)
    frozen = infer(con, config, known)
    if frozen != (known or {}):
        path = frozen_path(offline_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(frozen, indent=1, ensure_ascii=False))
        tmp.replace(path)
        logger.info("froze %d inferred category list(s) in %s", len(frozen), path)
    return resolved(config, frozen)


def project_config(config: OnboardingConfig, settings: Settings) -> OnboardingConfig:
    """A project's config as its feature tables were built: resolved with their frozen category lists."""
    from nextbest.onboarding.features import project_paths

    return resolved(config, read_frozen(project_paths(config, settings).offline_dir))
