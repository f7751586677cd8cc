"""Where models are registered: the MLflow tracking and registry URIs of an installation, and a client bound to them.

On the floor because training (which registers versions) and serving (which loads champions and polls aliases)
both need it, and neither may import the other. URIs are set per call from `Settings` (never at import), so tests
point MLflow at a temp dir by passing their own settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nextbest.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


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
