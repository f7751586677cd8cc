"""The Feast project of an onboarded bank, generated from its config: entities, sources, views, feature services.

One Feast project per bank (`project:` in the config), with its own registry, offline tables and online store under
`<home>/projects/<project>/`, beside the simulated bank's `feature_repo/`. Objects are built in Python from the
config and applied through the SDK (`nextbest.features.project.TableFeatures.apply`, which also writes a small
Feast repo folder: feature_store.yaml + repo.py that rebuilds the same objects from the same config), so
`feast apply`, `feast materialize` and `feast ui` work there as Feast users expect. Nothing in this module knows
about Berka: every name comes from the config.

Every feature is Float64 (flags 0/1, missing = NaN/None): the models are XGBoost, so the feature table, training
frame and online read all carry plain numbers. Entity keys are Int64 or String (`key_type` of the entity).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nextbest.errors import NotReadyError
from nextbest.onboarding.config import OnboardingConfig, feature_names_of
from nextbest.onboarding.features import TIMESTAMP_COLUMN, project_paths
from nextbest.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from nextbest.features.store import ViewTable

logger = logging.getLogger(__name__)


def repo_config_dict(config: OnboardingConfig, settings: Settings) -> dict[str, Any]:
    """The feature_store.yaml content: file offline store, SQLite or Redis online store per settings."""
    paths = project_paths(config, settings)
    if settings.features.online_store == "redis":
        # The project name is part of every Redis key Feast writes, so projects share one Redis safely.
        online: dict[str, Any] = {"type": "redis", "connection_string": settings.features.redis_connection}
    else:
        online = {"type": "sqlite", "path": str(paths.online_db)}
    return {
        "project": config.project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": str(paths.registry), "cache_ttl_seconds": 60},
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def repo_config(config: OnboardingConfig, settings: Settings) -> RepoConfig:
    from feast.repo_config import RepoConfig

    paths = project_paths(config, settings)
    return RepoConfig(repo_path=paths.repo_dir, **repo_config_dict(config, settings))


def get_project_store(config: OnboardingConfig, settings: Settings, require_applied: bool = False) -> FeatureStore:
    """The FeatureStore of an onboarded project; `require_applied` raises NotReadyError before it is applied."""
    paths = project_paths(config, settings)
    if require_applied and not paths.registry.is_file():
        raise NotReadyError(
            f"Feast project {config.project!r} is not applied under {paths.root}; run "
            "`nextbest features build --project FILE` and `nextbest features apply --project FILE` first"
        )
    from feast import FeatureStore

    paths.root.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(config, settings))


def build_definitions(config: OnboardingConfig, offline_dir: Path) -> list[Any]:
    """Every Feast object of the project over the parquet tables in `offline_dir`, in apply order."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    from nextbest.onboarding.categories import read_frozen, resolved

    offline_dir = Path(offline_dir).resolve()
    config = resolved(config, read_frozen(offline_dir))  # the category lists the tables were built with
    value_types = {"int": ValueType.INT64, "str": ValueType.STRING}
    entities = {
        name: Entity(name=name, join_keys=[ent.key], value_type=value_types[ent.key_type], description=ent.description)
        for name, ent in config.entities.items()
    }
    views: dict[str, FeatureView] = {}
    for view in config.feature_views:
        ent = config.entities[view.entity]
        key, key_dtype = ent.key, (Int64 if ent.key_type == "int" else String)
        source = FileSource(
            name=f"{view.name}_source",
            path=str(offline_dir / f"{view.name}.parquet"),
            timestamp_field=TIMESTAMP_COLUMN,
        )
        views[view.name] = FeatureView(
            name=view.name,
            entities=[entities[view.entity]],
            # timedelta(0) is Feast's "never expires"; snapshot rows are exact at their time, so no TTL is needed
            # for training, and the online store keeps the latest row.
            ttl=timedelta(days=view.ttl_days) if view.ttl_days else timedelta(0),
            schema=[Field(name=key, dtype=key_dtype)] + [Field(name=f, dtype=Float64) for f in feature_names_of(view)],
            source=source,
            online=True,
            description=view.description or f"{view.source} -> {view.entity} features (onboarded)",
            tags={"project": config.project, "onboarded": "true"},
        )
    services = [
        FeatureService(
            name=model.feature_service,
            features=[views[v] for v in model.feature_views],
            description=model.description or f"features of model {model.name}",
            tags={"model": model.name},
        )
        for model in config.models
    ]
    return [*entities.values(), *views.values(), *services]


_REPO_PY = '''"""Generated by `nextbest features apply`: Feast objects of project {project!r}, from its config."""

from pathlib import Path

from nextbest.onboarding.config import load_config
from nextbest.onboarding.feast_repo import build_definitions

for _obj in build_definitions(load_config({config_path!r}), Path({offline_dir!r})):
    globals()[f"{{type(_obj).__name__}}_{{_obj.name}}"] = _obj
'''


def write_repo_folder(config: OnboardingConfig, settings: Settings, config_path: Path) -> Path:
    """Write feature_store.yaml + repo.py so the `feast` CLI works in `<project>/feature_repo/`."""
    paths = project_paths(config, settings)
    paths.repo_dir.mkdir(parents=True, exist_ok=True)
    (paths.repo_dir / "feature_store.yaml").write_text(
        yaml.safe_dump(repo_config_dict(config, settings), sort_keys=False)
    )
    (paths.repo_dir / "repo.py").write_text(
        _REPO_PY.format(
            project=config.project,
            config_path=str(Path(config_path).resolve()),
            offline_dir=str(paths.offline_dir.resolve()),
        )
    )
    return paths.repo_dir


def view_tables(config: OnboardingConfig, settings: Settings) -> list[ViewTable]:
    """The project's views as the materialization writer sees them: parquet table, entity key, Float64 features."""
    from nextbest.features.store import ViewTable
    from nextbest.onboarding.categories import project_config

    paths = project_paths(config, settings)
    config = project_config(config, settings)
    return [
        ViewTable(
            name=view.name,
            path=paths.table(view.name),
            key=config.entities[view.entity].key,
            key_type=config.entities[view.entity].key_type,
            fields={name: "float64" for name in feature_names_of(view)},
            timestamp=TIMESTAMP_COLUMN,
        )
        for view in config.feature_views
    ]
