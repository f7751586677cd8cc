"""The right to erasure, for any project: one customer (an entity key) removed from every store the platform keeps.

`erase_customer(project, settings, key)` (the `nextbest erase CUSTOMER` command; the service's admin route calls it
too) runs these steps, each returning what it removed:
1. related keys: what else belonged to the customer (`FeatureProject.related_keys`: the simulated bank's logged
   contacts; a table project's other entities whose table names the customer's key, e.g. contacts, loans), read
   before anything is deleted;
2. tombstones first (`nextbest.erasure.Tombstones`, salted hashes under the project's home), so a build,
   materialization or training set running meanwhile already leaves the customer out, and every later rebuild
   from files the bank has not cleaned, re-simulation or retrain does too;
3. the online store: every view of the customer's entity (and of the related entities), SQLite rows or Redis
   hashes (`FeatureProject.erase_online`);
4. the offline feature tables, rewritten without the keys (`FeatureProject.erase_offline`);
5. the data the platform generated itself: the simulated bank's world (every source table under
   `settings.sources_dir`, the simulator's truth under `settings.truth_dir`). A bank's own files (a table
   project's `data_dir`) are its source system and are never modified: the report lists them under
   `erase_at_source`, and the tombstones keep anything rebuilt from them clean until the bank erases there;
6. the decision log (decisions with their feature snapshots, delivered contacts, feedback, events, consents) and
   its JSON-lines files (spool, dead letters, the journal segments of processes no longer running);
7. lineage: the registered versions of the project's models (MLflow) whose training data could have held the
   customer, with the data window each was trained on, so the bank can decide to retrain (a retrain excludes
   tombstoned customers).
Running it again for the same key is harmless (nothing left to remove; the tombstone is already there).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nextbest.errors import ConfigError, NextbestError, NotReadyError

if TYPE_CHECKING:
    from nextbest.features.project import FeatureProject
    from nextbest.project import EntitySpec, Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The decision log's spool beside a project's state (serving/engine.py opens its DecisionLog with it).
SPOOL_FILE = "decision_log_spool.jsonl"
#: Lineage fields copied from a training run's `lineage.json` (the data it was trained on).
LINEAGE_FIELDS = (
    "snapshot_start",
    "snapshot_end",
    "as_of",
    "rows",
    "customers",
    "rows_logged",
    "rows_served",
    "sources_dir",
    "data_dir",
)


@dataclass(frozen=True)
class ModelLineage:
    """One registered model version whose training data could have held the erased customer."""

    model: str
    version: str
    aliases: list[str]
    run_id: str
    trained_at: str
    data: dict[str, Any]
    may_hold: bool  # trained before the key was first erased (a later version was trained without it)


@dataclass(frozen=True)
class ErasureReport:
    """What one erasure removed, where, and what is left for the bank to do."""

    project: str
    entity: str
    key_column: str
    key: int | str
    erased_at: datetime
    tombstones: str
    new_tombstone: bool
    related: dict[str, int] = field(default_factory=dict)
    online: dict[str, int] = field(default_factory=dict)
    offline: dict[str, int] = field(default_factory=dict)
    generated_sources: dict[str, int] = field(default_factory=dict)
    decision_log: dict[str, int] = field(default_factory=dict)
    erase_at_source: list[str] = field(default_factory=list)
    models: list[ModelLineage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Steps that failed (store down, file locked) -> why; run the erasure again (it is idempotent).
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed

    @property
    def rows_removed(self) -> int:
        parts = (self.online, self.offline, self.generated_sources, self.decision_log)
        return sum(sum(p.values()) for p in parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what the admin route answers)."""
        out = asdict(self)
        out["erased_at"] = self.erased_at.isoformat()
        out["rows_removed"] = self.rows_removed
        out["complete"] = self.complete
        return out


# -------------------------------------------------------------------- keys


def erased_entity(project: Project, entity: str | None = None) -> str:
    """The entity a customer id names: `entity` if given, else the served entity, else the project's only entity or
    the one called `customer` (ConfigError otherwise)."""
    if entity is not None:
        if entity not in project.entities:
            raise ConfigError(f"project {project.name!r} has no entity {entity!r}; known: {sorted(project.entities)}")
        return entity
    if project.serving is not None:
        return project.serving.entity
    if len(project.entities) == 1:
        return next(iter(project.entities))
    if "customer" in project.entities:
        return "customer"
    raise ConfigError(f"project {project.name!r} has several entities {sorted(project.entities)}: name one")


def coerce_key(spec: EntitySpec, value: object) -> int | str:
    """A key as the entity types it: an int key may come as its digits (a command line, a URL path)."""
    if spec.key_type == "int":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{spec.key}: an integer key is expected, got {value!r}")
        return value
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        raise ConfigError(f"{spec.key}: a non-empty string key is expected, got {value!r}")
    return str(value)


# -------------------------------------------------------------------- the steps


def _related(features: FeatureProject, entity: str, key: int | str, notes: list[str]) -> dict[str, set[Any]]:
    try:
        return {c: v for c, v in features.related_keys(entity, key).items() if v}
    except NextbestError as exc:
        notes.append(f"related keys not read ({exc}); only the customer's own key was erased")
        return {}


def _erase_online(features: FeatureProject, keys: Mapping[str, Collection[object]], notes: list[str]) -> dict[str, int]:
    """Step 3: every entity of the project whose key column has erased keys (a project never applied has no online
    store yet: nothing to erase)."""
    removed: dict[str, int] = {}
    try:
        for name, spec in features.project.entities.items():
            if keys.get(spec.key):
                removed[name] = features.erase_online(name, sorted(keys[spec.key], key=str))
    except NotReadyError as exc:
        notes.append(f"no online store to erase: {exc}")
    if features.settings.features.online_store == "redis":
        notes.append(
            "Redis: the erased hashes stay in its RDB/AOF persistence files until the next save or rewrite "
            "(BGSAVE / BGREWRITEAOF)"
        )
    return removed


def _generated_datasets(settings: Settings) -> list[Path]:
    """The simulated world's datasets: each source table and each truth table (a file or a folder of parts)."""
    out: list[Path] = []
    for folder in (settings.sources_dir, settings.truth_dir):
        if folder.is_dir():
            out += sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix == ".parquet")
    return out


def _erase_generated(settings: Settings, keys: Mapping[str, Collection[object]]) -> dict[str, int]:
    """Step 5 (the simulated bank): the world the platform generated, rewritten without the keys."""
    from nextbest.erasure import drop_rows

    removed: dict[str, int] = {}
    for dataset in _generated_datasets(settings):
        rows = drop_rows(dataset, keys)
        if rows:
            removed[str(dataset.relative_to(settings.world_dir))] = rows
    return removed


def bank_files(project: Project, keys: Collection[str]) -> list[str]:
    """A table project's own files holding a column named like an erased key (the bank erases there)."""
    if project.tables is None:
        return []
    config = project.tables
    out = []
    for table in config.tables.values():
        if set(table.columns) & set(keys):
            path = Path(table.file)
            out.append(str(path if path.is_absolute() else config.data_dir / path))
    return out


def _log_files(home: Path) -> list[Path]:
    """The decision log's JSON-lines files beside a project's state: its spool, its dead letters (the spool's
    `.dead.jsonl` sibling) and the write-ahead journal's segments (`journal/`)."""
    spool = home / SPOOL_FILE
    return [spool, spool.with_name(spool.stem + ".dead.jsonl"), *sorted((home / "journal").glob("*.jsonl"))]


def _erase_log(project: Project, settings: Settings, entity: str, key: int | str, notes: list[str]) -> dict[str, int]:
    """Step 6: the decision log and its spool, when the entity is the one the service decides for."""
    from nextbest.erasure import FileInUse, drop_spooled, erase_decision_log

    if project.serving is None or project.serving.entity != entity:
        return {}
    uri = project.decision_log_uri(settings)
    removed = erase_decision_log(uri, key)
    for path in _log_files(project.home(settings)):
        try:
            lines = drop_spooled(path, key)
        except FileInUse:
            notes.append(f"{path.name} is held by a running process; erase again once it has been written")
            continue
        if lines:
            removed[path.name] = removed.get(path.name, 0) + lines
    if not uri.startswith("sqlite"):
        notes.append(
            "decision log (configured URI, shared by this installation's projects): the rows are deleted; "
            "the database reclaims their space at its next VACUUM"
        )
    return removed


# -------------------------------------------------------------------- lineage


def _has_tracking(settings: Settings) -> bool:
    return settings.mlflow.tracking_uri is not None or (settings.mlflow_dir / "mlflow.db").is_file()


def _run_data(client: Any, run_id: str) -> dict[str, Any]:
    """The data window a run was trained on (its `lineage.json` artefact; {} when it has none)."""
    try:
        with tempfile.TemporaryDirectory(prefix="nextbest-erase-") as tmp:
            path = client.download_artifacts(run_id, "lineage.json", tmp)
            lineage = json.loads(Path(path).read_text())
    except Exception:  # mlflow raises its own types for a missing artefact or run
        return {}
    return {k: lineage[k] for k in LINEAGE_FIELDS if k in lineage}


def model_lineage(project: Project, settings: Settings, since: datetime) -> list[ModelLineage]:
    """The registered versions of the project's models, with their runs' data windows; `may_hold` for a version
    trained before `since` (when the key was first erased)."""
    if not _has_tracking(settings):
        return []
    from mlflow.exceptions import MlflowException

    from nextbest.models.registry import mlflow_client

    client = mlflow_client(settings)
    out: list[ModelLineage] = []
    for name in project.model_names:
        try:
            versions = client.search_model_versions(f"name = '{name}'")
            aliases = dict(client.get_registered_model(name).aliases or {}) if versions else {}
        except MlflowException:
            continue
        for v in sorted(versions, key=lambda v: int(v.version)):
            trained = datetime.fromtimestamp(int(v.creation_timestamp) / 1000, UTC)
            out.append(
                ModelLineage(
                    model=name,
                    version=str(v.version),
                    aliases=sorted(a for a, n in aliases.items() if str(n) == str(v.version)),
                    run_id=str(v.run_id or ""),
                    trained_at=trained.isoformat(),
                    data=_run_data(client, v.run_id) if v.run_id else {},
                    may_hold=trained < since,
                )
            )
    return out


# -------------------------------------------------------------------- the job


def _notes(project: Project, report_models: list[ModelLineage]) -> list[str]:
    held = [f"{m.model} v{m.version}" for m in report_models if m.may_hold]
    notes = [
        "tombstoned: build, materialize and every training-set builder leave this customer out, so re-building, "
        "re-materializing and a retrain exclude them",
    ]
    if held:
        notes.append(
            f"model versions trained on data that could have held the customer: {', '.join(held)}; "
            f"retrain to drop them from the models (nextbest retrain --project {project.source or 'FILE'})"
        )
    if project.kind == "tables":
        notes.append(
            "the bank's own files (erase_at_source: those with a column named like an erased key) were not "
            "modified: erase the customer in the source system, with what links to them through other ids"
        )
    return notes


def erase_customer(project: Project, settings: Settings, key: int | str, entity: str | None = None) -> ErasureReport:
    """Erase one customer (a key of `entity`, default the served one) from every store of the project; see the
    module docstring for the steps."""
    from nextbest.features.project import feature_project

    entity = erased_entity(project, entity)
    spec = project.entities[entity]
    key = coerce_key(spec, key)
    features = feature_project(project, settings)
    notes: list[str] = []
    failed: dict[str, str] = {}
    related = _related(features, entity, key, notes)
    keys: dict[str, set[Any]] = {**related, spec.key: {key}}
    tombstones = features.tombstones
    new = tombstones.add(keys, principal=(spec.key, key)) > 0
    step = _Steps(failed)
    online = step("online store", lambda: _erase_online(features, keys, notes))
    offline = step("feature tables", lambda: features.erase_offline(keys))
    generated = step("generated world", lambda: _erase_generated(settings, keys)) if project.kind == "genome" else {}
    log = step("decision log", lambda: _erase_log(project, settings, entity, key, notes))
    since = tombstones.first_erased(spec.key, key) or datetime.now(UTC)
    models = step("lineage", lambda: model_lineage(project, settings, since), [])
    report = ErasureReport(
        project=project.name,
        entity=entity,
        key_column=spec.key,
        key=key,
        erased_at=datetime.now(UTC),
        tombstones=str(tombstones.path),
        new_tombstone=new,
        related={c: len(v) for c, v in related.items()},
        online=online,
        offline=offline,
        generated_sources=generated,
        decision_log=log,
        erase_at_source=bank_files(project, keys),
        models=models,
        notes=[*notes, *_notes(project, models)],
        failed=failed,
    )
    logger.info(
        "erased %s of project %s: %d rows removed (tombstone %s)%s",
        entity, project.name, report.rows_removed, "new" if new else "already there",
        f"; INCOMPLETE: {', '.join(failed)}" if failed else "",
    )  # fmt: skip
    return report


class _Steps:
    """Runs the erasure steps: a step that fails (a store down, a file locked) is recorded in `failed` and the others
    still run; the tombstone, written first, already keeps the customer out of anything rebuilt meanwhile."""

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = failed

    def __call__(self, name: str, fn: Callable[[], T], default: T | None = None) -> T:
        try:
            return fn()
        except Exception as exc:  # any store error: report it, erase the rest, let the caller run it again
            logger.exception("erasure step %r failed", name)
            self.failed[name] = f"{exc.__class__.__name__}: {exc}"
            return default if default is not None else {}  # type: ignore[return-value]
