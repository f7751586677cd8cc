"""The onboarding configuration: how a bank's own tables map onto Nextbest, as one typed, validated YAML file.

A data scientist describes, declaratively and without code:
- `tables`: the raw files (path, format, separator, column types, date formats, missing-value markers);
- `derived`: row-level reshaping in DuckDB SQL over those tables (joins, parsing an encoded birth number, counting
  rows of an UNDATED table). Anything that aggregates over time must NOT go here: time aggregations are declared
  as feature `aggregations` so the platform can enforce the point-in-time rule;
- `entities`: what models score (a key, the table with one row per entity, when it starts to exist, and when
  feature snapshots are taken: on a calendar, or once at the entity's own event time, e.g. a loan at its date);
- `feature_views`: pass-through or time-relative attributes (as of the latest source row strictly before the
  snapshot) and aggregations (count / sum / mean / min / max / std / last / days since) over windows, optionally
  one feature per category value;
- `models`: one Feast feature service and one registered model each, with the label (an event within a horizon
  after the snapshot, or an outcome column of the entity's table) and the validation scheme.

Tables as they come: a file with no id names a generated `row_key` (1, 2, ... in file order); a file with no date
names an `extract_date` column (the day before `data_end` on every row), and its models are then split and
validated with stratified folds (`split: auto`, `validation: {method: auto}`). Text columns' categories are
inferred at the first build and frozen (`nextbest.onboarding.categories`; values not seen then go to an `_other`
feature), or listed by hand.

Why this shape: the tables a bank exports differ, but what a propensity or risk model needs from them does not
(keys, event times, history aggregates, a label after the snapshot). Declaring aggregations instead of writing
them lets one builder guarantee "a feature stamped t uses only rows with timestamp < t" for every bank.
Models are frozen pydantic objects with `extra="forbid"`, so a typo in a YAML key is an error naming the key.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from nextbest.base import Frozen
from nextbest.errors import ConfigError

ColumnType = Literal["int", "float", "str", "date", "datetime", "bool"]
AggregationFn = Literal["count", "sum", "mean", "min", "max", "std", "last", "days_since_last", "days_since_first"]
_NAME = r"^[a-z][a-z0-9_]*$"
#: top-level keys of a project file that belong to the project contract (`nextbest.project`), not the table mapping
CONTRACT_KEYS: frozenset[str] = frozenset(
    {"catalogue", "policy", "drift", "serving", "action_model", "features", "segments", "fairness"}
)
_ENV_REF = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class TableConfig(Frozen):
    """One raw file as the bank exports it."""

    file: str = Field(description="Path relative to the project's data_dir (or absolute).")
    format: Literal["csv", "parquet"] = "csv"
    separator: str = ","
    columns: dict[str, ColumnType] = Field(description="Columns to read and their types; other columns are dropped.")
    date_formats: dict[str, str] = Field(
        default_factory=dict, description="strptime format per date/datetime column, e.g. '%y%m%d'."
    )
    na_values: list[str] = Field(default_factory=list, description="Strings that mean missing, e.g. '?'.")
    row_key: str | None = Field(
        None, pattern=_NAME, description="The file has no id: generate one (1, 2, ... in file order) in this column."
    )
    extract_date: str | None = Field(
        None, pattern=_NAME, description="The file has no date: add this column, the extract date (data_end - 1 day)."
    )

    @model_validator(mode="after")
    def _date_formats_name_date_columns(self) -> TableConfig:
        for col in self.date_formats:
            if self.columns.get(col) not in ("date", "datetime"):
                raise ValueError(f"date_formats names {col!r}, which is not a date/datetime column of this table")
        if not self.columns:
            raise ValueError("a table needs at least one column")
        for generated in (self.row_key, self.extract_date):
            if generated is not None and generated in self.columns:
                raise ValueError(f"generated column {generated!r} is also a column of the file; pick another name")
        if self.row_key is not None and self.row_key == self.extract_date:
            raise ValueError("row_key and extract_date must be different columns")
        return self


class CalendarSnapshots(Frozen):
    """Feature rows for every live entity at 00:00 UTC of each period start in [start, end)."""

    kind: Literal["calendar"] = "calendar"
    start: date
    end: date | None = Field(None, description="Exclusive; default: the project's data_end.")
    every: Literal["week", "month", "quarter"] = "month"


class EventSnapshots(Frozen):
    """One feature row per entity, at its own `valid_from` time (e.g. a loan at the date it was granted)."""

    kind: Literal["event"] = "event"


Snapshots = Annotated[CalendarSnapshots | EventSnapshots, Field(discriminator="kind")]


class EntityConfig(Frozen):
    """Something a model scores: an account, a loan, a customer."""

    key: str = Field(description="Join key column, the Feast entity's join key.")
    key_type: Literal["int", "str"] = Field("int", description="int64 keys, or strings (e.g. 'C-000123', UUIDs).")
    table: str = Field(description="Table or derived table with exactly one row per entity.")
    valid_from: str | None = Field(description="Timestamp column: the entity exists from then; null = always.")
    snapshots: Snapshots
    description: str = ""


#: The category value that stands for "any value not listed" (the `<name>_other` feature); never a real value.
OTHER = "\x00other"
AUTO = "auto"


class AttributeFeature(Frozen):
    """A column of the latest source row before the snapshot, as is or relative to the snapshot time.

    A text column is one-hot encoded: `categories` lists its values by hand, or `auto` (also what a text column
    without `categories` gets) infers the `max_categories` most frequent values at the first build and freezes
    them, with an `<name>_other` feature for every other value (`other: true` adds it to a hand-made list too)."""

    name: str = Field(pattern=_NAME)
    column: str
    transform: Literal["value", "days_since", "years_since"] = "value"
    categories: list[str] | Literal["auto"] | None = Field(
        None, description="One-hot: one 0/1 feature per listed value, or 'auto' (inferred at the first build)."
    )
    other: bool = Field(False, description="Add `<name>_other`: 1 for a value not listed (always on for auto).")
    max_categories: int = Field(20, ge=1, description="auto: at most this many values, the most frequent first.")

    @model_validator(mode="after")
    def _categories_only_for_values(self) -> AttributeFeature:
        if self.categories is not None and self.transform != "value":
            raise ValueError(f"feature {self.name!r}: categories need transform 'value'")
        if isinstance(self.categories, list) and not self.categories:
            raise ValueError(f"feature {self.name!r}: list at least one category, or write categories: auto")
        return self


class CategorySplit(Frozen):
    """One feature per listed value of a category column; `auto` infers and freezes them at the first build
    (with an `_other` feature, as `other: true` adds to a hand-made list); unlisted values are otherwise ignored."""

    column: str
    values: list[str] | Literal["auto"] = Field(AUTO, description="The values, or 'auto' (the default).")
    other: bool = False
    max_categories: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _some_values(self) -> CategorySplit:
        if isinstance(self.values, list) and not self.values:
            raise ValueError(f"by {self.column!r}: list at least one value, or write values: auto")
        return self


class Aggregation(Frozen):
    """An aggregate over source rows strictly before the snapshot, within each window."""

    name: str = Field(pattern=_NAME)
    fn: AggregationFn
    column: str | None = None
    windows: list[int | None] = Field(default_factory=lambda: [None], description="Days; null = all history.")
    by: CategorySplit | None = None

    @model_validator(mode="after")
    def _column_when_needed(self) -> Aggregation:
        needs_column = self.fn in ("sum", "mean", "min", "max", "std", "last")
        if needs_column and self.column is None:
            raise ValueError(f"aggregation {self.name!r}: fn {self.fn!r} needs a column")
        if not needs_column and self.column is not None:
            raise ValueError(f"aggregation {self.name!r}: fn {self.fn!r} takes no column")
        if any(w is not None and w <= 0 for w in self.windows) or not self.windows:
            raise ValueError(f"aggregation {self.name!r}: windows must be positive days or null")
        return self


class FeatureViewConfig(Frozen):
    """A Feast feature view generated from a source table: attributes or aggregations, keyed by one entity."""

    name: str = Field(pattern=_NAME)
    entity: str
    source: str
    join_on: str | None = Field(
        None, description="Column shared by the entity table and the source; default the entity key."
    )
    timestamp: str | None = Field(
        description=(
            "Source event-time column. null declares the source UNDATED: its rows count at every snapshot "
            "(state the assumption in a comment; undated data is the commonest leak)."
        )
    )
    ttl_days: int | None = Field(None, gt=0, description="Online/offline TTL; null = never expires.")
    attributes: list[AttributeFeature] = Field(default_factory=list)
    aggregations: list[Aggregation] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureViewConfig:
        if bool(self.attributes) == bool(self.aggregations):
            raise ValueError(f"feature view {self.name!r}: give either attributes or aggregations (exactly one)")
        if self.timestamp is None and any(w is not None for a in self.aggregations for w in a.windows):
            raise ValueError(f"feature view {self.name!r}: an undated source (timestamp: null) allows only window null")
        return self


class EventRef(Frozen):
    """Where an event happens: a table, the column that links it to the entity, and its timestamp column."""

    table: str
    key: str
    timestamp: str


class EventWithinLabel(Frozen):
    """1 if any listed event happens in [t, t + horizon_days), 0 otherwise; t is a calendar snapshot."""

    kind: Literal["event_within"] = "event_within"
    events: list[EventRef] = Field(min_length=1)
    horizon_days: int = Field(gt=0)
    exclude_prior_events: bool = Field(
        True, description="Drop snapshots of entities that already had one of the events (first uptake only)."
    )


class OutcomeColumnLabel(Frozen):
    """The label is an outcome column of the entity's table, observed after the entity's event snapshot."""

    kind: Literal["outcome_column"] = "outcome_column"
    column: str
    positive: list[str | int | bool] = Field(min_length=1)
    negative: list[str | int | bool] | None = Field(None, description="null: every value not positive is 0.")


Label = Annotated[EventWithinLabel | OutcomeColumnLabel, Field(discriminator="kind")]


class ValidationConfig(Frozen):
    """How quality is estimated honestly on small data (`nextbest.onboarding.validation`).

    `auto` (the default): rolling origin by period when the rows span at least `folds` + 2 periods, repeated
    stratified CV otherwise (e.g. a table with no date). `period`: the rolling origin's test period (default: the
    entity's snapshot period for calendar snapshots, else a month)."""

    method: Literal["auto", "repeated_cv", "time_split"] = "auto"
    folds: int = Field(5, ge=2)
    repeats: int = Field(3, ge=1)
    period: Literal["week", "month", "quarter"] | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1, description="The trainer's most recent share held out (the gate's).")


class ModelConfig(Frozen):
    """One model: its feature service (a Feast FeatureService) and its registered MLflow model."""

    name: str = Field(pattern=_NAME, description="Registered model name, e.g. berka_default.")
    entity: str
    feature_service: str = Field(pattern=_NAME)
    feature_views: list[str] = Field(min_length=1)
    label: Label
    train_from: date | None = Field(None, description="Only snapshots at or after this date.")
    train_to: date | None = Field(None, description="Only snapshots before this date.")
    validation: ValidationConfig = ValidationConfig()
    split: Literal["auto", "time", "stratified"] = Field(
        "auto",
        description=(
            "The shared trainer's train/validation/test split (early stopping, calibration, the gate's holdout): "
            "by time, or stratified at random for small sets of independent outcome-labelled entities; auto: by "
            "time unless the rows span fewer than 3 dates (a table with no date), then stratified."
        ),
    )
    trials: int | None = Field(None, gt=0, description="Optuna trials; default settings.training.trials.")
    description: str = ""


class OnboardingConfig(Frozen):
    """A bank's whole mapping: one Feast project, its feature services and models."""

    project: str = Field(pattern=_NAME, description="Feast project name; also the state sub-folder.")
    description: str = ""
    data_dir: Path = Field(description="Folder of the raw files; ${ENV:-default} is expanded, relative to the YAML.")
    data_end: date = Field(description="Exclusive end of the extract: nothing happens on or after it.")
    tables: dict[str, TableConfig]
    derived: dict[str, str] = Field(
        default_factory=dict, description="name -> DuckDB SELECT over tables and earlier derived tables, row-level."
    )
    entities: dict[str, EntityConfig]
    feature_views: list[FeatureViewConfig]
    models: list[ModelConfig] = Field(min_length=1)

    @field_validator("tables", "derived", "entities")
    @classmethod
    def _names_are_identifiers(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"name {name!r} must be lower_snake_case")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> OnboardingConfig:
        known_tables = set(self.tables) | set(self.derived)
        if clash := set(self.tables) & set(self.derived):
            raise ValueError(f"names used both as table and derived: {sorted(clash)}")
        for name, ent in self.entities.items():
            if ent.table not in known_tables:
                raise ValueError(f"entity {name!r}: unknown table {ent.table!r}; known: {sorted(known_tables)}")
        views: dict[str, FeatureViewConfig] = {}
        for view in self.feature_views:
            if view.name in views:
                raise ValueError(f"feature view {view.name!r} is defined twice")
            views[view.name] = view
            if view.entity not in self.entities:
                raise ValueError(f"feature view {view.name!r}: unknown entity {view.entity!r}")
            if view.source not in known_tables:
                raise ValueError(f"feature view {view.name!r}: unknown source {view.source!r}")
            names = feature_names_of(view)
            if len(set(names)) != len(names):
                raise ValueError(f"feature view {view.name!r} produces a feature name twice")
        services = set()
        for model in self.models:
            if model.feature_service in services:
                raise ValueError(f"feature service {model.feature_service!r} is used by two models")
            services.add(model.feature_service)
            if model.entity not in self.entities:
                raise ValueError(f"model {model.name!r}: unknown entity {model.entity!r}")
            produced_by: dict[str, str] = {}
            for v in model.feature_views:
                if v not in views:
                    raise ValueError(f"model {model.name!r}: unknown feature view {v!r}; known: {sorted(views)}")
                if views[v].entity != model.entity:
                    raise ValueError(f"model {model.name!r}: view {v!r} is keyed by {views[v].entity!r}")
                # Feast joins a service's features by bare name, so names must be unique within one service.
                for feature in feature_names_of(views[v]):
                    if feature in produced_by:
                        raise ValueError(
                            f"model {model.name!r}: feature {feature!r} comes from both {produced_by[feature]!r} "
                            f"and {v!r}; rename one"
                        )
                    produced_by[feature] = v
            snapshots = self.entities[model.entity].snapshots
            if isinstance(model.label, EventWithinLabel):
                if not isinstance(snapshots, CalendarSnapshots):
                    raise ValueError(f"model {model.name!r}: an event_within label needs calendar snapshots")
                for ev in model.label.events:
                    if ev.table not in known_tables:
                        raise ValueError(f"model {model.name!r}: unknown event table {ev.table!r}")
            elif not isinstance(snapshots, EventSnapshots):
                raise ValueError(f"model {model.name!r}: an outcome_column label needs event snapshots")
        return self

    def view(self, name: str) -> FeatureViewConfig:
        """The feature view called `name`."""
        for v in self.feature_views:
            if v.name == name:
                return v
        raise ConfigError(f"unknown feature view {name!r} in project {self.project!r}")

    def model(self, name: str) -> ModelConfig:
        """The model called `name` (the registered model name)."""
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"unknown model {name!r}; the config defines {[m.name for m in self.models]}")

    @property
    def extract_day(self) -> date:
        """The date a generated `extract_date` column holds: the last day of the extract (data_end - 1 day)."""
        return date.fromordinal(self.data_end.toordinal() - 1)

    def snapshot_end(self, entity: str) -> date:
        """Exclusive end of an entity's calendar snapshots (the extract end unless set)."""
        snaps = self.entities[entity].snapshots
        return snaps.end if isinstance(snaps, CalendarSnapshots) and snaps.end else self.data_end


def _sanitize(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") or "blank"


def window_suffix(window: int | None) -> str:
    """Feature-name suffix of a window: `_90d`, or `_all` for the whole history."""
    return "_all" if window is None else f"_{window}d"


def sanitize(value: str) -> str:
    """A category value as a feature-name part (lower snake case)."""
    return _sanitize(value)


def _category_names(prefix: str, values: list[str], other: bool) -> list[tuple[str, str]]:
    named = [(f"{prefix}_{_sanitize(v)}", v) for v in values]
    return named + ([(f"{prefix}_other", OTHER)] if other else [])


def aggregation_feature_names(agg: Aggregation) -> list[tuple[str, str | None, int | None]]:
    """(feature name, category value or None or `OTHER`, window) for every feature an aggregation produces; an
    `auto` split not yet resolved (`nextbest.onboarding.categories`) produces none."""
    out: list[tuple[str, str | None, int | None]] = []
    for window in agg.windows:
        if agg.by is None:
            out.append((f"{agg.name}{window_suffix(window)}", None, window))
        elif isinstance(agg.by.values, list):
            for name, value in _category_names(agg.name, agg.by.values, agg.by.other):
                out.append((f"{name}{window_suffix(window)}", value, window))
    return out


def attribute_feature_names(attr: AttributeFeature) -> list[tuple[str, str | None]]:
    """(feature name, category value or None or `OTHER`) for every feature an attribute produces; `auto`
    categories not yet resolved produce none."""
    if attr.categories is None:
        return [(attr.name, None)]
    if attr.categories == AUTO:
        return []
    return list(_category_names(attr.name, list(attr.categories), attr.other))


def feature_names_of(view: FeatureViewConfig) -> list[str]:
    """Every feature column a view produces, in a stable order (of a resolved config: `categories.resolved`)."""
    names = [n for a in view.attributes for n, _ in attribute_feature_names(a)]
    names += [n for a in view.aggregations for n, _, _ in aggregation_feature_names(a)]
    return names


def _expand_env(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        value = os.environ.get(m.group("name"))
        if value:
            return value
        if m.group("default") is not None:
            return m.group("default")
        raise ConfigError(f"environment variable {m.group('name')} is not set and has no default")

    return _ENV_REF.sub(repl, text)


def parse_config(raw: object, path: Path) -> OnboardingConfig:
    """Validate a table mapping read from `path`: `data_dir` is env-expanded and resolved relative to the file."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    raw = dict(raw)
    if isinstance(raw.get("data_dir"), str):
        data_dir = Path(_expand_env(raw["data_dir"])).expanduser()
        raw["data_dir"] = data_dir if data_dir.is_absolute() else (path.parent / data_dir).resolve()
    try:
        return OnboardingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path} is invalid:\n{exc}") from exc


def load_config(path: str | Path) -> OnboardingConfig:
    """Read and validate the table mapping of a project file (its contract sections are read by `nextbest.project`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"onboarding config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return parse_config({k: v for k, v in raw.items() if k not in CONTRACT_KEYS}, path)
