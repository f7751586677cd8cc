"""The drift policy as data: which drift counts (methods, thresholds, guards) and the rules that make a verdict.

On the floor because a project declares its drift policy (`drift:` in the project file) beside its models and
decision policy; `monitoring.drift` measures drift and applies it. Why distances and not p-values, and what each
guard does, is explained in `monitoring.drift`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from nextbest.base import Frozen
from nextbest.errors import ConfigError

ColumnKind = Literal["numeric", "categorical"]
# Evidently stat tests that measure a distance (their value does not grow with n); p-value tests are left out.
DistanceMethod = Literal["wasserstein", "psi", "jensenshannon", "hellinger", "kl_div"]


class DriftPolicy(Frozen):
    """Which drift counts: methods and thresholds per column kind, and the rules that make a verdict."""

    numeric_method: DistanceMethod = "wasserstein"
    numeric_threshold: float = Field(0.1, gt=0)
    categorical_method: DistanceMethod = "psi"
    categorical_threshold: float = Field(0.2, gt=0)
    # A numeric column with at most this many distinct reference values (flags, one-hots, small counts) is compared
    # as categorical with PSI: a normed Wasserstein on a 0/1 flag is just |rate change| / std and over-reacts for
    # rare flags.
    max_categorical_values: int = Field(5, ge=1)
    # Numeric inputs are clipped at these reference quantiles (both tails) before comparing: see
    # `monitoring.frames.prepare`. 0 disables.
    winsorize_quantile: float = Field(0.01, ge=0, lt=0.5)
    # Rule 1: alarm when at least this share of all monitored inputs drifted.
    drift_share: float = Field(0.25, gt=0, le=1)
    # Rule 2: alarm when at least `key_features_min_drifted` of these (e.g. the model's top-importance inputs) drifted.
    key_features: tuple[str, ...] = ()
    key_features_min_drifted: int = Field(2, ge=1)
    # Rule 3: prediction drift on any score column (normed Wasserstein on the score distribution).
    prediction_method: DistanceMethod = "wasserstein"
    prediction_threshold: float = Field(0.1, gt=0)
    # Rule 4: outcome-rate shift per group (|log odds ratio| >= threshold and its 95% CI excludes 0).
    outcome_log_odds_threshold: float = Field(0.4, gt=0)  # 0.4 ~ odds x1.5 (or /1.5)
    outcome_min_positives: int = Field(10, ge=1)  # both windows need this many positive outcomes in the group
    # Below this many rows on either side the verdict is "not enough data" (never an alarm): drift scores of tiny
    # samples are mostly noise.
    min_rows: int = Field(200, ge=1)
    # Fixed-size seeded sample per side for the Evidently report (None: all rows). On 70 NBA-shaped inputs the
    # scores of a 20k-row sample were within 0.04 of the full-data scores at 100k and 1M rows, and every column's
    # verdict the same (benchmarks/bench_monitoring.py); Evidently's cost grows with rows, the verdict does not.
    sample_rows: int | None = Field(20_000, ge=1_000)
    # Evidently's per-column ValueDrift (distribution figures and its test) for at most this many inputs of a wider
    # report: every drifted input, then the nearest to their threshold; the policy widget lists every input's score,
    # threshold and judgement. Each ValueDrift costs Evidently ~0.2-0.3 s (plotly figures, a copy of the whole frame)
    # and its DataDriftPreset re-scores every column twice more: 40-80 s for 110 inputs, 2-4 s this way
    # (benchmarks/bench_monitoring.py). None: the full preset on every report (Evidently's own drifted-columns count
    # and table beside the policy's).
    report_columns: int | None = Field(20, ge=1)
    # Noise guard for small windows: a column counts as drifted only if its score also exceeds the
    # `noise_quantile` of scores between two resamples of the reference itself, drawn with the same sizes. At large
    # n this floor is tiny and the threshold decides; at small n it keeps sampling noise from raising the alarm.
    noise_resamples: int = Field(20, ge=0)
    noise_quantile: float = Field(0.95, gt=0, lt=1)
    noise_max_rows: int = Field(10_000, ge=1)  # above this many current rows the floor is negligible: skipped
    # Trend guard: when the reference has timestamps, a column counts as drifted only if its score is also at least
    # `trend_factor` x the drift between the reference's own older and newer halves. Bank data trend on their own
    # (products accumulate, "days since" grows, pay days fall differently into a 90-day window); a model was
    # trained on that movement, so only change well beyond it is news. 0 disables.
    trend_factor: float = Field(2.0, ge=0)
    # Rule 5: one input moving very far (score >= severe_factor x its threshold, past the guards) is drift alone.
    severe_factor: float = Field(3.0, gt=1)
    # Inputs that follow the calendar (the pay cycle) move with where a window falls in the month: a served window
    # shorter than `calendar_cycle_days`, compared with a reference spanning months, drifts on them with nothing
    # changed (measured in the closed loop: alarms on drift-free 7-day windows). On such windows they are left out of
    # the input check (named in the verdict's skipped columns); windows of a full cycle or longer judge them. Which
    # inputs follow the calendar is the project's to say (`drift:` in its file; the simulated bank names its pay-cycle
    # inputs in configs/simbank.yaml): none by default.
    calendar_cycle_features: tuple[str, ...] = ()
    calendar_cycle_days: float = Field(28.0, gt=0)  # a month (the shortest): a window this long sees every phase
    seed: int = 0

    def calendar_skipped(self, inputs: Sequence[str], window_days: float) -> list[str]:
        """The inputs to leave out of a window of `window_days`: calendar-cycle ones, if the window is shorter."""
        if window_days >= self.calendar_cycle_days:
            return []
        return [f for f in inputs if f in self.calendar_cycle_features]

    def method_for(self, kind: ColumnKind) -> str:
        return self.numeric_method if kind == "numeric" else self.categorical_method

    def threshold_for(self, kind: ColumnKind) -> float:
        return self.numeric_threshold if kind == "numeric" else self.categorical_threshold


def load_drift_policy(
    path: str | Path | None = None, base: DriftPolicy | None = None, **overrides: object
) -> DriftPolicy:
    """`base` (default: the default policy; a project's `drift`) with the fields a YAML file sets (keys =
    `DriftPolicy` fields), then keyword overrides."""
    data: dict[str, object] = base.model_dump() if base is not None else {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"drift policy file {p} not found")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"drift policy file {p} must hold a mapping of DriftPolicy fields")
        data.update(loaded)
    data.update(overrides)
    try:
        return DriftPolicy(**data)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"invalid drift policy: {exc}") from exc
