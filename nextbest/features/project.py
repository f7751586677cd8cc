"""A project's features as the platform uses them: one interface, one implementation per kind of project.

`feature_project(project, settings)` gives the `FeatureProject` of any project: `GenomeFeatures` for the simulated
bank's hand-written repo (`feature_repo/`), `TableFeatures` for a bank's own tables mapped by its project file
(`nextbest.onboarding`). Commands (`nextbest features build|apply|materialize --project ...`), training, the decision
engine and monitoring call this interface and never the kind-specific modules, so every bank gets the same steps.

What a kind provides: build the offline feature tables, register the Feast objects (apply), load the online store
(materialize), the Feast store, which materialized views a feature service or the served entity reads (and their
fields), and, for the genome only, request-time context (an on-demand view) and real-time pushes.

Erasure (`nextbest.erasure`, the job `nextbest.forget`): `erase_online` deletes entities from the online store,
`erase_offline` rewrites the feature tables without them, `related_keys` names what else belonged to an entity
(its contacts, its loans). Build, materialize and push leave out the keys of the project's `tombstones`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextbest.erasure import Tombstones
from nextbest.errors import ConfigError, NotReadyError
from nextbest.features.store import MaterializeMethod, MaterializeStats, ProgressFn, ViewTable
from nextbest.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from nextbest.project import Project

logger = logging.getLogger(__name__)

#: (request-time input fields read from the online store, the function computing context features from them)
ContextFn = Callable[[Mapping[str, Sequence[Any]]], dict[str, list[Any]]]


class FeatureProject(ABC):
    """The features of one project: offline tables, Feast registry, online store, views."""

    kind: str

    def __init__(self, project: Project, settings: Settings) -> None:
        self.project = project
        self.settings = settings
        self._store: FeatureStore | None = None
        self._tombstones: Tombstones | None = None

    # ---------------------------------------------------------------- the pipeline
    @abstractmethod
    def build(self, progress: ProgressFn | None = None) -> dict[str, Path]:
        """Build the offline feature tables (point-in-time correct); view name -> parquet path."""

    @abstractmethod
    def apply(self) -> None:
        """Register entities, sources, views and feature services in the project's Feast registry."""

    @abstractmethod
    def materialize(
        self, method: MaterializeMethod = "fast", end: datetime | None = None, progress: ProgressFn | None = None
    ) -> MaterializeStats:
        """Load the latest row of every entity into the online store."""

    @abstractmethod
    def view_tables(self) -> list[ViewTable]:
        """Every materialized view's offline table, key and fields (what materialization and erasure read)."""

    # ---------------------------------------------------------------- erasure
    @property
    def tombstones(self) -> Tombstones:
        """The keys this project erased (`nextbest.erasure`), under the project's home (re-read when it changes)."""
        if self._tombstones is None:
            self._tombstones = Tombstones.at(self.project.home(self.settings))
        return self._tombstones

    def erase_online(self, entity: str, keys: Sequence[object]) -> int:
        """Delete `keys` of `entity` from every one of its views in the online store; rows (Redis: hashes) removed."""
        from nextbest.features.online import erase_entities

        spec = self.project.entities[entity]
        return erase_entities(self.store(), spec.key, spec.key_type, list(keys), self.entity_views(entity))

    def erase_offline(self, drop: Mapping[str, Collection[object]]) -> dict[str, int]:
        """Rewrite the feature tables without rows whose key is in `drop` (key column -> values); view -> rows."""
        from nextbest.erasure import drop_rows

        return {v.name: drop_rows(v.path, {v.key: drop[v.key]}) for v in self.view_tables() if drop.get(v.key)}

    @abstractmethod
    def related_keys(self, entity: str, key: object) -> dict[str, set[Any]]:
        """The keys of what belonged to one entity (key column -> values), e.g. a customer's contacts."""

    def store(self) -> FeatureStore:
        """The project's Feast store, opened once (NotReadyError before `apply` for a table project)."""
        if self._store is None:
            self._store = self._open_store()
        return self._store

    @abstractmethod
    def _open_store(self) -> FeatureStore:
        """Open the project's Feast store."""

    # ---------------------------------------------------------------- views
    @abstractmethod
    def service_views(self, service: str) -> tuple[str, ...]:
        """The materialized views a feature service reads (an on-demand view's sources included)."""

    @abstractmethod
    def view_fields(self, view: str) -> tuple[str, ...]:
        """The feature names of a materialized view."""

    @abstractmethod
    def view_entity(self, view: str) -> str:
        """The entity a view is keyed by."""

    def entity_views(self, entity: str) -> tuple[str, ...]:
        """Every materialized view of one entity, in definition order."""
        return tuple(v for v in self.views if self.view_entity(v) == entity)

    @property
    @abstractmethod
    def views(self) -> tuple[str, ...]:
        """Every materialized view of the project."""

    def served_views(self, entity: str, services: Sequence[str], extra: Sequence[str] = ()) -> tuple[str, ...]:
        """The views one online read of `entity` covers: those of the services keyed by it, then `extra`."""
        names = [v for s in services for v in self.service_views(s) if self.view_entity(v) == entity]
        for v in extra:
            if v not in self.views or self.view_entity(v) != entity:
                raise ConfigError(f"project {self.project.name!r}: {v!r} is not a view of entity {entity!r}")
            names.append(v)
        return tuple(dict.fromkeys(names))

    # ---------------------------------------------------------------- request time
    @property
    def context(self) -> tuple[tuple[str, ...], ContextFn] | None:
        """Request-time (on-demand) features: the online inputs they read and the function; None if the project has
        none."""
        return None

    def request_row(self, channel: str, at: datetime, location_type: str | None = None) -> dict[str, Any]:
        """The request fields an on-demand view reads (none for a project without request-time features)."""
        return {}

    @property
    def pushes(self) -> bool:
        """Whether events can move online features (a push source)."""
        return False

    def push(self, event: Mapping[str, Any]) -> bool:
        """Fold one real-time event (`customer`, `event_type`, `ts`, optional `channel`, `location_type`, `page`)
        into the online store; True if it moved a feature, False if this event type moves none."""
        raise NotReadyError(f"project {self.project.name!r} has no push source: its features are batch-materialized")


# -------------------------------------------------------------------- the simulated bank's genome


class GenomeFeatures(FeatureProject):
    """The hand-written customer genome in `feature_repo/` (profile, activity, contacts, real-time, context)."""

    kind = "genome"

    def build(
        self, progress: ProgressFn | None = None, *, every_days: int = 1, chunk_customers: int = 10_000
    ) -> dict[str, Path]:
        """Build the genome's tables from the world's source tables (`settings.sources_dir`) into `offline_dir`.

        `every_days` is the snapshot cadence (7 for 100k+ customers x 180 days); `chunk_customers` bounds memory.
        """
        from feature_repo.pipeline import build_feature_tables
        from nextbest import distributed
        from nextbest.features.store import offline_dir

        if not self.settings.sources_dir.is_dir():
            raise NotReadyError(f"no world at {self.settings.world_dir}: run `nextbest simulate` first")
        with distributed.client(self.settings) as dask:  # compute: dask -> the customer chunks on its workers
            return build_feature_tables(
                self.settings.sources_dir,
                offline_dir(self.settings),
                every_days=every_days,
                progress=progress,
                chunk_customers=chunk_customers,
                excluded=self._erased_customers(),
                dask=dask,
            )

    def _erased_customers(self) -> set[int]:
        """The world's customers that were erased (nothing read when the project erased none)."""
        import pyarrow.parquet as pq

        from feature_repo.pipeline import source_path
        from feature_repo.specs import JOIN_KEY

        erased = self.tombstones
        if not erased:
            return set()
        path = source_path(self.settings.sources_dir, "customers")
        ids = pq.read_table(path, columns=[JOIN_KEY]).column(0).unique().to_pylist()
        return {int(i) for i in erased.matching(JOIN_KEY, ids)}

    def related_keys(self, entity: str, key: object) -> dict[str, set[Any]]:
        """A world customer's logged contacts (`contact_id`: the simulator's truth is keyed by them too)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from feature_repo.pipeline import source_path
        from nextbest.errors import DataError

        try:
            path = source_path(self.settings.sources_dir, "contacts")
        except DataError:
            return {}
        table = pq.read_table(path, columns=["customer_id", "contact_id"])
        mine = table.filter(pc.equal(table.column("customer_id"), int(key)))  # type: ignore[call-overload]
        return {"contact_id": set(mine.column("contact_id").to_pylist())}

    def view_tables(self) -> list[ViewTable]:
        from nextbest.features.store import genome_views

        return genome_views(self.settings)

    def apply(self) -> None:
        """Register the entity, sources, views and feature services (what `feast apply` does), and create tables."""
        from feature_repo.specs import MATERIALIZED_VIEWS
        from nextbest.features.store import definitions, offline_dir

        tables = offline_dir(self.settings)
        missing = [v for v in MATERIALIZED_VIEWS if not (tables / f"{v}.parquet").is_file()]
        if missing:
            raise NotReadyError(
                f"feature tables {missing} not built under {tables}: run `nextbest features build` first"
            )
        self.store().apply(definitions(self.settings).objects())
        logger.info("applied feature repo %r to %s", self.settings.features.project, self.settings.features_dir)

    def materialize(
        self, method: MaterializeMethod = "fast", end: datetime | None = None, progress: ProgressFn | None = None
    ) -> MaterializeStats:
        """Load every customer's latest row (within each view's TTL before `end`, default the newest row)."""
        from nextbest.features.store import feature_tables_end, materialize_views

        end = end or feature_tables_end(self.settings)
        return materialize_views(
            self.store(), self.view_tables(), end, method=method, progress=progress, erased=self.tombstones
        )

    def _open_store(self) -> FeatureStore:
        from nextbest.features.store import get_store

        return get_store(self.settings)

    def service_views(self, service: str) -> tuple[str, ...]:
        from feature_repo import specs

        if service not in specs.SERVICE_VIEWS:
            raise ConfigError(f"unknown feature service {service!r}; known: {', '.join(specs.SERVICE_VIEWS)}")
        views = [v for v in specs.SERVICE_VIEWS[service] if v != specs.CONTEXT_VIEW]
        if specs.CONTEXT_VIEW in specs.SERVICE_VIEWS[service]:
            views.append(specs.REALTIME_VIEW)  # the on-demand view's online source
        return tuple(views)

    def view_fields(self, view: str) -> tuple[str, ...]:
        from feature_repo import specs

        return tuple(specs.VIEW_FIELDS[view])

    def view_entity(self, view: str) -> str:
        from feature_repo import specs

        if view not in specs.VIEW_FIELDS:
            raise ConfigError(f"unknown feature view {view!r}; known: {', '.join(specs.VIEW_FIELDS)}")
        return specs.ENTITY_NAME

    @property
    def views(self) -> tuple[str, ...]:
        from feature_repo import specs

        return tuple(specs.MATERIALIZED_VIEWS)

    @property
    def context(self) -> tuple[tuple[str, ...], ContextFn] | None:
        from feature_repo import specs
        from feature_repo.context import context_features

        return tuple(specs.REALTIME_FIELDS), context_features

    def request_row(self, channel: str, at: datetime, location_type: str | None = None) -> dict[str, Any]:
        from nextbest.features.store import request_context

        return request_context(channel, at, location_type=location_type)

    @property
    def pushes(self) -> bool:
        return True

    def push(self, event: Mapping[str, Any]) -> bool:
        from feature_repo.specs import DIGITAL_EVENTS, JOIN_KEY, SIGNAL_COLUMNS
        from nextbest.features.realtime import push_event

        kind = event["event_type"]
        if self.tombstones.contains(JOIN_KEY, event["customer"]):
            return False  # an erased customer: nothing of theirs enters the online store again
        if kind in SIGNAL_COLUMNS:
            row = {"signal": kind, "location_type": event.get("location_type")}
        elif kind in DIGITAL_EVENTS:
            row = {"event_type": kind, "page": event.get("page"), "channel": event.get("channel") or "app"}
        else:
            return False  # recorded for training by the caller; moves no real-time feature
        return push_event(self.store(), {JOIN_KEY: event["customer"], "ts": event["ts"], **row}) is not None


# -------------------------------------------------------------------- a bank's own tables


class TableFeatures(FeatureProject):
    """A Feast project generated from the table mapping of a project file (`nextbest.onboarding`)."""

    kind = "tables"

    def __init__(self, project: Project, settings: Settings) -> None:
        super().__init__(project, settings)
        if project.tables is None:
            raise ConfigError(f"project {project.name!r} has no table mapping")
        self.mapping = project.tables
        self._views = {v.name: v for v in self.mapping.feature_views}

    def build(self, progress: ProgressFn | None = None) -> dict[str, Path]:
        """Compute every view's feature table from the bank's files (`nextbest.onboarding.features`)."""
        from nextbest.onboarding.features import write_feature_tables

        return write_feature_tables(self.mapping, self.settings, progress=progress)

    def apply(self) -> None:
        """Register the generated objects in the project's Feast registry; write its Feast repo folder."""
        from nextbest.onboarding.feast_repo import build_definitions, get_project_store, write_repo_folder
        from nextbest.onboarding.features import project_paths

        paths = project_paths(self.mapping, self.settings)
        missing = [v for v in self._views if not paths.table(v).is_file()]
        if missing:
            raise NotReadyError(
                f"feature tables {missing} of project {self.project.name!r} not built: "
                "run `nextbest features build --project FILE` first"
            )
        store = get_project_store(self.mapping, self.settings)
        objects = build_definitions(self.mapping, paths.offline_dir)
        store.apply(objects)
        self._store = store
        if self.project.source is not None:
            write_repo_folder(self.mapping, self.settings, self.project.source)
        logger.info(
            "applied Feast project %s: %d objects, registry %s", self.mapping.project, len(objects), paths.registry
        )

    def materialize(
        self, method: MaterializeMethod = "fast", end: datetime | None = None, progress: ProgressFn | None = None
    ) -> MaterializeStats:
        """Load every entity's latest row (up to `end`, default the extract end, inclusive) into the online store.

        The calendar spine's last row sits exactly at the extract end; event-snapshot entities (a loan at its date)
        have rows across the whole history, so views never expire (ttl 0: from the epoch).
        """
        from nextbest.features.store import materialize_views

        end = end or datetime.combine(self.mapping.data_end, datetime.min.time(), tzinfo=UTC)
        views = self.view_tables()
        return materialize_views(self.store(), views, end, method=method, progress=progress, erased=self.tombstones)

    def view_tables(self) -> list[ViewTable]:
        from nextbest.onboarding.feast_repo import view_tables

        return view_tables(self.mapping, self.settings)

    def related_keys(self, entity: str, key: object) -> dict[str, set[Any]]:
        """The keys of the other entities whose table names this entity's key (a customer's contacts, an account's
        loans), read from the bank's tables."""
        from nextbest.onboarding.tables import related_keys

        return related_keys(self.mapping, entity, key)

    def _open_store(self) -> FeatureStore:
        from nextbest.onboarding.feast_repo import get_project_store

        return get_project_store(self.mapping, self.settings, require_applied=True)

    def service_views(self, service: str) -> tuple[str, ...]:
        for m in self.mapping.models:
            if m.feature_service == service:
                return tuple(m.feature_views)
        raise ConfigError(f"project {self.project.name!r} has no feature service {service!r}")

    def view_fields(self, view: str) -> tuple[str, ...]:
        from nextbest.onboarding.categories import project_config
        from nextbest.onboarding.config import feature_names_of

        # With the category lists the tables were built with (inferred ones are frozen at the first build).
        return tuple(feature_names_of(project_config(self.mapping, self.settings).view(view)))

    def view_entity(self, view: str) -> str:
        return self.mapping.view(view).entity

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self._views)


def feature_project(project: Project, settings: Settings) -> FeatureProject:
    """The feature project of any project, by its kind."""
    return GenomeFeatures(project, settings) if project.kind == "genome" else TableFeatures(project, settings)


def features_of(settings: Settings) -> FeatureProject:
    """The feature project of the project these settings name (`settings.project`; default the simulated bank)."""
    from nextbest.project import project_of

    return feature_project(project_of(settings), settings)
