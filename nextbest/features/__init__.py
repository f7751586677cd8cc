"""Public API of the feature layer for the demo, training and serving: one import, `nextbest.features`.

A project's features are built, applied and materialized through its `FeatureProject` (`feature_project(project,
settings)`, or `features_of(settings)` for the project the settings name): `GenomeFeatures` for the simulated
bank's hand-written repo in `feature_repo/` (specs, pipeline, on-demand math, Feast definitions, action
attributes), `TableFeatures` for a bank's tables mapped by its project file (`nextbest.onboarding`). This package
also holds the genome's store, push and online reads. Heavy libraries (feast, duckdb) are imported inside
functions, so importing this package is cheap.
"""

from __future__ import annotations

from feature_repo.actions import (
    ACTION_FEATURES,
    RELEVANCE_FEATURES,
    action_features,
    add_action_features,
    add_relevance_features,
)
from feature_repo.specs import (
    CHURN_SERVICE,
    CONTEXT_FIELDS,
    NBA_SERVICE,
    PUSH_SOURCE,
    REQUEST_FIELDS,
    VIEW_FIELDS,
    service_features,
)
from nextbest.features.project import FeatureProject, GenomeFeatures, TableFeatures, feature_project, features_of
from nextbest.features.realtime import push_event, push_events
from nextbest.features.store import (
    MaterializeStats,
    get_store,
    offline_dir,
    online_features,
    online_rows,
    repo_config,
    request_context,
    request_frame,
)

__all__ = [
    "ACTION_FEATURES",
    "CHURN_SERVICE",
    "CONTEXT_FIELDS",
    "NBA_SERVICE",
    "PUSH_SOURCE",
    "REQUEST_FIELDS",
    "VIEW_FIELDS",
    "FeatureProject",
    "GenomeFeatures",
    "MaterializeStats",
    "TableFeatures",
    "RELEVANCE_FEATURES",
    "action_features",
    "add_action_features",
    "add_relevance_features",
    "feature_project",
    "features_of",
    "get_store",
    "offline_dir",
    "online_features",
    "online_rows",
    "push_event",
    "push_events",
    "repo_config",
    "request_context",
    "request_frame",
    "service_features",
]
