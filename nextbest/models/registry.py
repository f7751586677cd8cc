"""Where models are registered: the MLflow tracking and registry URIs of an installation, and a client bound to them.

On the floor because training (which registers versions) and serving (which loads champions and polls aliases)
both need it, and neither may import the other. URIs are set per call from `Settings` (never at import), so tests
point MLflow at a temp dir by passing their own settings.

`REGISTRY_CALL_BOUNDS` bounds every registry call of a long-running process (the decision service): MLflow's
defaults against an HTTP tracking server are a 120 s timeout and 7 retries with exponential backoff (minutes per
call), and libpq waits for a PostgreSQL connection as long as TCP does. `bound_registry_calls()` applies them to
this process (values already set in the environment win); `serving.runner.service_env` hands them to the server.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from nextbest.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


#: environment for MLflow clients that must fail fast: ~35 s at worst per HTTP call (3 tries of 10 s + backoff)
REGISTRY_CALL_BOUNDS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds per request (connect, and each read of a streamed download)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_DOWNLOAD_CHUNK_TIMEOUT": "60",  # presigned-URL chunk downloads (cloud artefact stores)
    # libpq (psycopg2) connect timeout for SQL tracking/registry stores; MLflow still retries engine creation on
    # its own (10 attempts, ~100 s of backoff), which a background load absorbs without blocking the probes.
    "PGCONNECT_TIMEOUT": "10",
}


def bound_registry_calls(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set `REGISTRY_CALL_BOUNDS` in `environ` (default: this process) where not set already; returns what is used.

    MLflow reads these variables at each request, so calling this before the first registry call is enough.
    """
    env = os.environ if environ is None else environ
    for key, value in REGISTRY_CALL_BOUNDS.items():
        env.setdefault(key, value)
    return {key: env[key] for key in REGISTRY_CALL_BOUNDS}


def database_uri(uri: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg2://...` unless psycopg 3 is installed.

    SQLAlchemy 2.1 made psycopg 3 the default PostgreSQL driver; this project ships psycopg2, so the plain URI
    that MLflow and Optuna docs show would fail with "No module named 'psycopg'".
    """
    if uri.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return "postgresql+psycopg2://" + uri.split("://", 1)[1]
    return uri


def tracking_uri(settings: Settings) -> str:
    return database_uri(settings.mlflow_tracking_uri)


def registry_uri(settings: Settings) -> str:
    return database_uri(settings.mlflow.registry_uri or settings.mlflow_tracking_uri)


def use_tracking(settings: Settings) -> None:
    """Point the fluent MLflow API at this installation's tracking and registry stores (call inside jobs)."""
    import mlflow

    if settings.mlflow.tracking_uri is None:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(settings))
    mlflow.set_registry_uri(registry_uri(settings))


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client bound to this installation's stores (also sets the fluent API's URIs, see `use_tracking`)."""
    from mlflow import MlflowClient

    use_tracking(settings)
    return MlflowClient(tracking_uri=tracking_uri(settings), registry_uri=registry_uri(settings))


def champion_version(settings: Settings, name: str, alias: str = "champion") -> str:
    """The version number registered model `name` has at `alias` (raises MlflowException if none)."""
    return str(mlflow_client(settings).get_model_version_by_alias(name, alias).version)
