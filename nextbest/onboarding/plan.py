"""How a model's rows will be split and validated, decided from their dates before anything heavy runs.

`split: auto` and `validation: {method: auto}` (the defaults) look at the label rows' timestamps:
- fewer than 3 distinct dates (a table with no date: every row stamped with the extract date) -> the trainer's
  split is stratified and validation is repeated stratified CV: there is no time order to follow;
- otherwise the trainer splits by time (the most recent rows are the gate's holdout), and validation is rolling
  origin by period when the rows span at least `folds` + 2 periods (repeated CV when they do not).
An explicit `split: time` or `validation: {method: time_split}` on rows that cannot be split so is a ConfigError
that says what to write instead: `nextbest onboard check` reports it in seconds, before build, apply and
materialize (it used to fail after them: "need at least 3 distinct timestamps to split by time, found 1").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from nextbest.errors import ConfigError
from nextbest.onboarding.config import CalendarSnapshots, OnboardingConfig

MIN_TIME_SPLIT_DATES = 3


@dataclass(frozen=True)
class ModelPlan:
    """The split and validation a model gets, and why (`notes`, printed before training)."""

    model: str
    split: Literal["time", "stratified"]
    validation: Literal["repeated_cv", "time_split"]
    period: Literal["week", "month", "quarter"]
    rows: int
    dates: int
    periods: int
    folds: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        how = (
            f"rolling origin over the last {self.folds} {self.period}s"
            if self.validation == "time_split"
            else "repeated stratified CV"
        )
        return f"{self.model}: split {self.split}, validation {how}" + "".join(f"; {n}" for n in self.notes)


def default_period(config: OnboardingConfig, model_name: str) -> Literal["week", "month", "quarter"]:
    """The rolling origin's period: the config's, else the entity's snapshot period, else a month."""
    model = config.model(model_name)
    if model.validation.period is not None:
        return model.validation.period
    snaps = config.entities[model.entity].snapshots
    return snaps.every if isinstance(snaps, CalendarSnapshots) else "month"


def plan_model(config: OnboardingConfig, model_name: str, timestamps: pd.Series) -> ModelPlan:
    """The model's split and validation for label rows stamped `timestamps` (module docstring); ConfigError for an
    explicit time split the dates cannot carry."""
    from nextbest.onboarding.validation import period_starts

    model = config.model(model_name)
    ts = pd.to_datetime(timestamps, utc=True)
    dates = int(ts.nunique())
    period = default_period(config, model_name)
    periods = int(period_starts(ts, period).nunique()) if len(ts) else 0
    folds = model.validation.folds
    notes: list[str] = []
    one_date = f"all {len(ts):,} rows share one date ({ts.min().date()})" if dates == 1 else f"{dates} dates only"
    if model.split == "time" and dates < MIN_TIME_SPLIT_DATES:
        raise ConfigError(
            f"model {model.name!r}: split: time needs rows on at least {MIN_TIME_SPLIT_DATES} dates, but {one_date} "
            "(a table with no date?); remove `split: time` (auto then splits stratified) or give the rows their dates"
        )
    if model.validation.method == "time_split" and periods < folds + 2:
        raise ConfigError(
            f"model {model.name!r}: validation time_split needs at least {folds + 2} {period}s of rows for {folds} "
            f"rolling-origin folds, found {periods}; use method auto or repeated_cv, a shorter period, or fewer folds"
        )
    split = model.split if model.split != "auto" else ("time" if dates >= MIN_TIME_SPLIT_DATES else "stratified")
    if model.split == "auto" and split == "stratified":
        notes.append(f"{one_date}: no time order to follow, so the trainer splits stratified")
    validation = model.validation.method
    if validation == "auto":
        validation = "time_split" if periods >= folds + 2 and split == "time" else "repeated_cv"
        if validation == "repeated_cv" and split == "time":
            notes.append(f"{periods} {period}(s) of rows: too few for {folds} rolling-origin folds, so repeated CV")
    return ModelPlan(model.name, split, validation, period, len(ts), dates, periods, folds, notes)
