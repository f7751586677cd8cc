"""Declarative experiments: a YAML spec names variants of one model; `run_experiment` trains each into one MLflow
experiment and returns a comparison table.

Data scientists edit `experiments/*.yaml`, not code. A spec is validated by `ExperimentSpec` (pydantic, unknown keys
are errors, frozen), so a typo in a variant fails at load time instead of silently training the wrong thing. Each
variant changes only what the training API exposes (trials, seed, features excluded by name pattern, churn horizon),
and every variant is trained by the same `training.pipeline.train_model` the `nextbest train` command uses, so an
experiment result is reproducible by hand. Variants are tracked, never registered as champions: experiments compare,
the promotion gate promotes.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import Field, ValidationError, model_validator

from nextbest.base import Frozen
from nextbest.errors import ConfigError
from nextbest.project import Project, project_of
from nextbest.settings import REPO_ROOT, Settings
from training.datasets import CLOSES_WITHIN

logger = logging.getLogger(__name__)

EXPERIMENTS_DIR = REPO_ROOT / "experiments"
#: metrics shown in the comparison table, in this order, when the runs logged them
DEFAULT_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "log_loss", "ece", "lift_top_decile")
_NAME = r"^[a-z][a-z0-9_]*$"


class VariantSpec(Frozen):
    """One arm of an experiment. Unset fields inherit the experiment's defaults."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    trials: int | None = Field(None, gt=0)
    seed: int | None = None
    #: feature names or fnmatch patterns (e.g. `hours_since_*`) left out of the model's inputs
    exclude_features: tuple[str, ...] = ()
    #: a `closes_within` (churn) model only: the label horizon ("closes within H days")
    horizon_days: int | None = Field(None, gt=0, le=365)


class ExperimentSpec(Frozen):
    """An experiment: one model, several variants, one MLflow experiment, one comparison table."""

    name: str = Field(pattern=_NAME)
    title: str
    description: str = ""
    model: str = Field(pattern=_NAME, description="A model of the simulated bank's project file (its name).")
    trials: int = Field(4, gt=0)
    seed: int = 7
    timeout_seconds: float | None = Field(None, gt=0)
    primary_metric: str = "roc_auc"
    higher_is_better: bool = True
    metrics: tuple[str, ...] = DEFAULT_METRICS
    variants: tuple[VariantSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate variant name(s) {dupes}")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric {self.primary_metric!r} must be one of metrics {list(self.metrics)}")
        return self

    def check_against(self, project: Project) -> None:
        """The model is the project's, and only a churn-horizon (`closes_within`) model takes `horizon_days`."""
        label = project.model(self.model).label
        with_horizon = [v.name for v in self.variants if v.horizon_days is not None]
        if with_horizon and label != CLOSES_WITHIN:
            raise ConfigError(
                f"experiment {self.name}: horizon_days applies to a {CLOSES_WITHIN} model, not {self.model!r} "
                f"({label}); set on {with_horizon}"
            )

    @property
    def varies_horizon(self) -> bool:
        return any(v.horizon_days is not None for v in self.variants)

    def mlflow_experiment(self, settings: Settings) -> str:
        """All variants of one spec go to one MLflow experiment, so the UI compares them side by side."""
        return f"{settings.mlflow.experiment_prefix}-experiment-{self.name}"

    def resolved(self, variant: VariantSpec) -> dict[str, Any]:
        """The effective settings of one variant (experiment defaults filled in)."""
        return {
            "trials": variant.trials or self.trials,
            "seed": self.seed if variant.seed is None else variant.seed,
            "exclude_features": variant.exclude_features,
            "horizon_days": variant.horizon_days,
        }


def load_spec(path: str | Path) -> ExperimentSpec:
    """Load and validate one experiment spec; a bare name looks in `experiments/` (with or without `.yaml`)."""
    p = Path(path)
    if not p.is_file():
        for candidate in (EXPERIMENTS_DIR / p, EXPERIMENTS_DIR / f"{p}.yaml"):
            if candidate.is_file():
                p = candidate
                break
        else:
            known = ", ".join(sorted(s.stem for s in EXPERIMENTS_DIR.glob("*.yaml"))) or "none"
            raise ConfigError(f"experiment spec {path} not found (shipped specs: {known})")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment spec {p} is not valid YAML: {exc}") from exc
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid experiment spec {p}:\n{exc}") from exc


def shipped_specs() -> list[Path]:
    """Every spec under `experiments/`."""
    return sorted(EXPERIMENTS_DIR.glob("*.yaml"))


def resolve_exclusions(patterns: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Feature names matched by the exclusion patterns (fnmatch, or `group:<name>` for a feature group of the feature
    repo, e.g. `group:moment`); a pattern matching nothing is an error (a typo would otherwise run a "without X"
    variant that still has X)."""
    from feature_repo.actions import feature_group
    from feature_repo.specs import FEATURE_GROUPS
    from nextbest.catalogue import load_catalogue

    excluded: list[str] = []
    for pattern in patterns:
        if pattern.startswith("group:"):
            group = pattern.removeprefix("group:")
            if group not in FEATURE_GROUPS:
                raise ConfigError(f"exclude_features: unknown feature group {group!r}; known: {sorted(FEATURE_GROUPS)}")
            members = feature_group(group, load_catalogue())
            matched = [f for f in feature_names if f in members]
        else:
            matched = [f for f in feature_names if fnmatch.fnmatchcase(f, pattern)]
        if not matched:
            raise ConfigError(f"exclude_features pattern {pattern!r} matches no feature of the model")
        excluded.extend(m for m in matched if m not in excluded)
    return excluded


@dataclass(frozen=True)
class VariantResult:
    """What one trained variant produced."""

    variant: str
    run_id: str | None
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


#: trains one variant: (settings, spec, variant, experiment name) -> result
Trainer = Callable[[Settings, ExperimentSpec, VariantSpec, str], VariantResult]


def train_variant(settings: Settings, spec: ExperimentSpec, variant: VariantSpec, experiment: str) -> VariantResult:
    """The default trainer: the training set through Feast, the variant's exclusions resolved against its real
    feature names, then `training.pipeline.fit_and_log` (tuned, tracked in `experiment`, never registered)."""
    from training.datasets import build_training_set
    from training.pipeline import FitOptions, fit_and_log

    opts = spec.resolved(variant)
    t0 = time.perf_counter()
    training_set = build_training_set(settings, spec.model, horizon_days=opts["horizon_days"])
    excluded = resolve_exclusions(opts["exclude_features"], training_set.feature_names)
    if excluded:
        training_set = training_set.without_features(excluded)
        logger.info(
            "variant %s: %d features excluded, %d left", variant.name, len(excluded), len(training_set.feature_names)
        )
    options = FitOptions(
        trials=opts["trials"],
        timeout=spec.timeout_seconds,
        seed=opts["seed"],
        register=False,
        promote=False,
        experiment_name=experiment,
        run_name=variant.name,
        tags={"nextbest.experiment": spec.name, "nextbest.variant": variant.name},
    )
    result = fit_and_log(settings, training_set, options)
    params = {k: v for k, v in opts.items() if v not in (None, ())}
    params["n_features"] = len(training_set.feature_names)
    params["n_excluded"] = len(excluded)
    return VariantResult(
        variant=variant.name,
        run_id=result.run_id,
        metrics={k: float(v) for k, v in result.metrics.items()},
        params=params,
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class ExperimentResult:
    spec: ExperimentSpec
    experiment_name: str
    tracking_uri: str
    variants: tuple[VariantResult, ...]

    def table(self) -> pd.DataFrame:
        return comparison_table(self.spec, self.variants)

    def ui_command(self) -> str:
        return mlflow_ui_command(self.tracking_uri)


def mlflow_ui_command(tracking_uri: str) -> str:
    """The command that opens the MLflow UI on this installation's tracking store."""
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def comparison_table(spec: ExperimentSpec, results: Sequence[VariantResult]) -> pd.DataFrame:
    """One row per variant: its options, the spec's metrics, the delta of the primary metric to the first
    variant (the baseline), and which variant is best on the primary metric."""
    if not results:
        raise ConfigError(f"experiment {spec.name} produced no variant results")
    by_name = {v.name: v for v in spec.variants}
    rows = []
    for r in results:
        v = by_name.get(r.variant)
        row: dict[str, Any] = {"variant": r.variant}
        if v is not None:
            opts = spec.resolved(v)
            row["trials"] = opts["trials"]
            row["seed"] = opts["seed"]
            if spec.varies_horizon:
                row["horizon_days"] = opts["horizon_days"]
            # How many model inputs the variant's patterns removed (resolved against the real feature names).
            row["excluded"] = int(r.params.get("n_excluded", 0)) if opts["exclude_features"] else 0
        for m in spec.metrics:
            row[m] = _metric(r.metrics, m)
        row["seconds"] = round(r.seconds, 1)
        row["run_id"] = r.run_id
        rows.append(row)
    table = pd.DataFrame(rows)
    primary = table[spec.primary_metric]
    table[f"delta_{spec.primary_metric}"] = primary - primary.iloc[0]
    if primary.notna().any():
        best = primary.idxmax() if spec.higher_is_better else primary.idxmin()
        table["best"] = table.index == best
    else:
        table["best"] = False
    return table


def _metric(metrics: dict[str, float], name: str) -> float:
    """A metric by name; training logs holdout metrics as `test_<name>`, which is what experiments compare."""
    for key in (f"test_{name}", name):
        if key in metrics:
            return float(metrics[key])
    return float("nan")


def run_experiment(
    spec: ExperimentSpec,
    settings: Settings,
    trainer: Trainer | None = None,
    on_variant: Callable[[VariantSpec], None] | None = None,
) -> ExperimentResult:
    """Train every variant of `spec` into one MLflow experiment, in spec order; returns results and table."""
    spec.check_against(project_of(settings))
    trainer = trainer or train_variant
    experiment = spec.mlflow_experiment(settings)
    results = []
    for variant in spec.variants:
        if on_variant is not None:
            on_variant(variant)
        logger.info("experiment %s: training variant %s", spec.name, variant.name)
        results.append(trainer(settings, spec, variant, experiment))
    return ExperimentResult(
        spec=spec, experiment_name=experiment, tracking_uri=settings.mlflow_tracking_uri, variants=tuple(results)
    )
