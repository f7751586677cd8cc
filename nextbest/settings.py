"""Typed settings for every Nextbest job: one object, loaded from `nextbest.yaml` and `NEXTBEST_*` env vars.

Precedence (highest first): explicit arguments, environment (`NEXTBEST_HOME`, `NEXTBEST_MLFLOW__TRACKING_URI`,
... nested with `__`), the YAML file named by `NEXTBEST_CONFIG` (default `./nextbest.yaml` if present), defaults.
All generated state (worlds, feature stores, MLflow runs, models, reports, logs) lives under `home`, which is
git-ignored. Nothing here touches the disk at import time; `Settings.ensure_dirs()` creates folders on demand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from nextbest.base import Frozen

if TYPE_CHECKING:
    from pydantic import ValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"


class WorldSettings(Frozen):
    """The default simulated bank the demo and tests use."""

    customers: int = Field(3_000, gt=0)
    days: int = Field(120, gt=0)
    seed: int = 42
    start_date: str = "2026-01-01"
    scenario: str | None = None
    scenario_start_day: int | None = None


class FeatureSettings(Frozen):
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = "127.0.0.1:6379"
    project: str = "nextbest"
    # Every Redis call bounded (seconds): a Redis that accepts but never answers must not hold a worker's threads.
    redis_timeout_s: float = Field(0.5, gt=0)
    # How training sets get point-in-time features (nextbest/features/point_in_time.py): "asof", the default, is the
    # Feast registry's join as DuckDB ASOF joins (same rows as Feast, tested; 1M churn_v1 rows in seconds, not
    # minutes); "feast" is `get_historical_features(...).to_df()` itself.
    offline_retrieval: Literal["asof", "feast"] = "asof"

    @property
    def redis_connection(self) -> str:
        """The connection string Feast gets: the configured one with socket timeouts unless it sets its own."""
        out = self.redis_connection_string
        for key in ("socket_timeout", "socket_connect_timeout"):
            if f"{key}=" not in out:
                out += f",{key}={self.redis_timeout_s:g}"
        return out


class MlflowSettings(Frozen):
    tracking_uri: str | None = None  # None: sqlite under home
    registry_uri: str | None = None
    experiment_prefix: str = "nextbest"


class TrainingSettings(Frozen):
    trials: int = Field(8, gt=0)
    churn_horizon_days: int = Field(30, gt=0)
    optuna_storage: str | None = None  # None: sqlite under home; postgresql+psycopg2://... in production
    seed: int = 7
    # NBA rows weighted by min(1 / logging propensity, clip) (training/weighting.py); 1 = off, the default: on four
    # worlds clip 5 cut the per-action over-prediction but moved stage 5's ladder value by -2.6..+1.8 points of the
    # oracle, i.e. within noise (docs/evaluation.md).
    nba_ips_clip: float = Field(1.0, ge=1.0)


class ServingSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = 3000
    decision_log_uri: str | None = None  # None: sqlite under home; postgresql://... in production
    auth_enabled: bool = False  # always on in the production profile (serving.auth)
    # `sha256:<hex digest>` -> role (a plain key is accepted in the embedded profile only; serving/auth.py)
    api_keys: dict[str, Literal["channel", "admin"]] = Field(default_factory=dict)
    api_keys_file: Path | None = None  # a YAML mapping of the same form, mode 600 (e.g. from a secrets manager)
    # Load shedding: requests in flight per worker past which the service answers 429 + Retry-After at once.
    max_in_flight: int = Field(16, gt=0)
    max_body_bytes: int = Field(64 * 1024, gt=0)  # larger bodies: 413
    body_timeout_s: float = Field(5.0, gt=0)  # a body that does not arrive in time (shorter than declared): 408
    # Decision ids carry an HMAC so that feedback for a made-up id is refused; workers and replicas that share a
    # decision log must share the secret (None: a per-installation secret file under home, mode 600).
    decision_id_secret: str | None = None  # a secret: set it through NEXTBEST_SERVING__DECISION_ID_SECRET
    workers: int = Field(1, gt=0)
    policy_path: Path | None = None  # None: the project's policy (a file to try a candidate policy on)
    feature_timeout_ms: float = Field(25.0, gt=0)  # online read budget; past it the answer is the safe fallback
    reload_interval_s: float = Field(30.0, ge=0)  # registry poll for a new champion; 0 disables
    breaker_failures: int = Field(3, gt=0)  # consecutive online-store failures that open the circuit
    breaker_reset_s: float = Field(5.0, gt=0)  # how long an open circuit skips the store before probing again
    # A running service that `nextbest retrain` tells to reload after a promotion (POST /admin/reload with the
    # admin key of api_keys); None: retrain relies on the service's registry poll (reload_interval_s).
    url: str | None = None
    # Simulation only: /recommend accepts a `ts` field (the decision's simulated time, which the decision log and
    # the monitoring windows use). Off by default and refused in the production profile (Settings validation).
    simulated_time: bool = False
    # OpenTelemetry spans for the API routes (BentoML's tracing; an exporter is configured in BentoML's own config).
    # Off: the routes are excluded from BentoML's tracing middleware, which otherwise opens a span and wraps every
    # ASGI send of every request, exported or not (docs/benchmarks.md measures it).
    tracing: bool = False


class Settings(BaseSettings):
    """All configuration for one Nextbest installation."""

    model_config = SettingsConfigDict(
        env_prefix="NEXTBEST_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    home: Path = REPO_ROOT / ".nextbest"
    profile: Literal["embedded", "production"] = "embedded"
    # The project file (nextbest/project.py): None is the simulated bank, configs/simbank.yaml.
    project: Path | None = None
    # Where the batch jobs' partitions run (nextbest/distributed.py): "local" (this process and its own worker
    # processes, the default) or "dask" (the Dask cluster at dask_scheduler): training (xgboost.dask, Optuna trials
    # on the workers), the simulator's chunks and the campaign's scoring, by the same commands.
    compute: Literal["local", "dask"] = "local"
    # tcp://host:8786 (a running scheduler: dask-kubernetes, dask-gateway, YARN, `dask scheduler`), or local:N to
    # start a LocalCluster of N worker processes on this machine for the job's duration.
    dask_scheduler: str = "local:2"
    world: WorldSettings = WorldSettings()
    features: FeatureSettings = FeatureSettings()
    mlflow: MlflowSettings = MlflowSettings()
    training: TrainingSettings = TrainingSettings()
    serving: ServingSettings = ServingSettings()

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_address(cls, value: str) -> str:
        from nextbest.distributed import parse_scheduler

        parse_scheduler(value)  # ValueError naming the accepted forms
        return value

    @model_validator(mode="after")
    def _no_simulated_time_in_production(self) -> Settings:
        if self.profile == "production" and self.serving.simulated_time:
            raise ValueError(
                "serving.simulated_time is for simulations only; it cannot be on in the production profile"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        named = os.environ.get("NEXTBEST_CONFIG")
        config_file = Path(named or "nextbest.yaml")
        if named and not config_file.is_file():
            raise FileNotFoundError(f"NEXTBEST_CONFIG names {config_file}, which does not exist")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    # ---- derived locations (all under home) ----
    @property
    def world_dir(self) -> Path:
        return self.home / "world"

    @property
    def sources_dir(self) -> Path:
        return self.world_dir / "sources"

    @property
    def truth_dir(self) -> Path:
        return self.world_dir / "truth"

    @property
    def features_dir(self) -> Path:
        """Feature tables (offline store files), Feast registry and SQLite online store."""
        return self.home / "features"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def optuna_storage(self) -> str:
        return self.training.optuna_storage or f"sqlite:///{self.home / 'optuna.db'}"

    @property
    def decision_log_uri(self) -> str:
        return self.serving.decision_log_uri or f"sqlite:///{self.home / 'decisions.db'}"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def bench_dir(self) -> Path:
        return self.home / "bench"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.world_dir, self.features_dir, self.mlflow_dir, self.reports_dir):
            d.mkdir(parents=True, exist_ok=True)


def load_settings(**overrides: object) -> Settings:
    """Load settings from file + environment, with explicit keyword overrides on top.

    A bad key or value is a `ConfigError` of one line naming the key and where it came from (the environment
    variable, or the settings file); a `NEXTBEST_CONFIG` that names no file is an error too, never ignored.
    """
    from pydantic import ValidationError

    from nextbest.errors import ConfigError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except ValidationError as exc:
        raise ConfigError(_settings_problem(exc)) from None


def _settings_problem(exc: ValidationError) -> str:
    """`settings: serving.port: Input should be a valid integer (from NEXTBEST_SERVING__PORT)` -- the first error."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first.get("loc", ())) or "(settings)"
    env = "NEXTBEST_" + key.upper().replace(".", "__")
    if env in os.environ:
        source = f"environment variable {env}"
    else:
        source = f"settings file {os.environ.get('NEXTBEST_CONFIG') or 'nextbest.yaml'}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"settings: {key}: {first.get('msg', 'invalid')} (from {source}){more}"
