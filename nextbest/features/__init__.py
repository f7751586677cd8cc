"""Public API of the feature repo for the demo, training and serving: one import, `nextbest.features`.

The feature logic itself lives in `feature_repo/` (specs, pipeline, on-demand math, Feast definitions, action
attributes); this package wires it to settings and to Feast (store, apply, materialize, push, online reads).
Heavy libraries (feast, duckdb) are imported inside functions, so importing this package is cheap.
"""

from __future__ import annotations

from feature_repo.actions import ACTION_FEATURES, action_features, add_action_features
from feature_repo.specs import (
    CHURN_SERVICE,
    CONTEXT_FIELDS,
    NBA_SERVICE,
    PUSH_SOURCE,
    REQUEST_FIELDS,
    VIEW_FIELDS,
    service_features,
)
from nextbest.features.realtime import push_event, push_events
from nextbest.features.store import (
    MaterializeStats,
    apply,
    build_feature_tables,
    get_store,
    materialize,
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
    "MaterializeStats",
    "action_features",
    "add_action_features",
    "apply",
    "build_feature_tables",
    "get_store",
    "materialize",
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
