"""The drift verdict: a policy in code that turns measured drift into one yes/no answer that can trigger a retrain.

Why distances and not p-values: a statistical test answers "are these two samples from exactly the same
distribution?", and at the sizes a bank serves (10^5-10^6 decisions a week) the answer is almost always "no",
because real traffic never repeats itself exactly; a KS or chi-square test then flags every column and the alarm
means nothing. We measure *how far* the distributions moved instead, with scores whose value does not grow with
the sample size:

- numeric inputs: Wasserstein distance normed by the reference standard deviation ("the current distribution
  moved by 0.1 standard deviations"), threshold 0.1;
- categorical inputs and numeric inputs with few distinct values (flags, one-hots, small counts): the population
  stability index (PSI), threshold 0.2 (the usual banking convention: < 0.1 stable, 0.1-0.25 watch, > 0.25 act);
- model scores (prediction drift): the same normed Wasserstein distance on each score column;
- outcomes (label drift: acceptance or churn rate per group, once feedback arrived): the log-odds ratio between
  current and reference rates, an effect size; a shift counts only if it is at least the threshold AND its
  confidence interval excludes zero (95% for the whole family of groups, Bonferroni), so a small window with a
  handful of outcomes cannot raise the alarm by noise while a large window cannot raise it for a trivially small
  change.

Because these are distances between distributions, a fixed-size seeded sample (20,000 rows per side by default)
estimates them with an error far below the thresholds (the benchmark shows the verdict on full data and on the
sample agree), which keeps Evidently fast on a million rows.

A column over its threshold is then re-judged by two guards that can only clear it (`monitoring.reports`): the
noise floor (the score two resamples of the reference reach by chance at these sizes) and the trend guard (the
drift the reference already showed between its older and newer halves: bank data trend on their own, and the
model was trained on that). On simulated worlds without a scenario about 15% of the inputs pass their threshold
between two periods (products accumulate, "days since" grows); after the guards about 4% remain.

The verdict (`decide_drift`) is a pure function of the measured scores and a `DriftPolicy`: drift if a large
enough share of all monitored inputs drifted, or enough of the model's most important inputs drifted, or one input
moved very far, or a score distribution drifted, or an outcome rate shifted. Every rule that fired becomes a
human-readable reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from nextbest.base import Frozen
from nextbest.drift_policy import ColumnKind, DriftPolicy
from nextbest.errors import DataError

logger = logging.getLogger(__name__)


class ColumnDrift(Frozen):
    """The measured drift of one column (input feature or score) between reference and current."""

    column: str
    kind: ColumnKind
    method: str
    score: float
    threshold: float
    drifted: bool
    noise_floor: float = 0.0  # score expected by chance at these sample sizes (0 when not estimated)
    trend: float = 0.0  # drift between the reference's own older and newer halves (0 when not estimated)


class OutcomeShift(Frozen):
    """The change of a binary outcome rate (acceptance, churn) in one group between reference and current."""

    group: str
    reference_rate: float
    current_rate: float
    reference_rows: int
    current_rows: int
    log_odds_ratio: float
    ci_low: float  # lower bound of the 95% CI of |log odds ratio|, clipped at 0
    supported: bool  # enough positives on both sides to judge
    drifted: bool


class DriftVerdict(Frozen):
    """The answer of the drift policy: drifted or not, why, and the scores it was based on."""

    drifted: bool
    reasons: tuple[str, ...]
    features: tuple[ColumnDrift, ...] = ()
    predictions: tuple[ColumnDrift, ...] = ()
    outcomes: tuple[OutcomeShift, ...] = ()
    drifted_share: float = 0.0
    reference_rows: int = 0
    current_rows: int = 0
    enough_data: bool = True
    skipped_columns: tuple[str, ...] = ()
    # What the verdict could not judge and why (inputs not in the served snapshot, checks reported only).
    notes: tuple[str, ...] = ()

    @property
    def drifted_features(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def exit_code(self) -> int:
        """Process exit status for schedulers: 1 on drift (trigger a retrain), 0 otherwise."""
        return 1 if self.drifted else 0

    def feature_scores(self) -> dict[str, float]:
        return {c.column: c.score for c in self.features}

    def summary(self) -> dict[str, object]:
        """A compact JSON-ready view (for the CLI, report JSON and MLflow tags)."""
        return {
            "drifted": self.drifted,
            "reasons": list(self.reasons),
            "drifted_share": round(self.drifted_share, 4),
            "drifted_features": self.drifted_features,
            "drifted_predictions": [c.column for c in self.predictions if c.drifted],
            "shifted_outcomes": [o.group for o in self.outcomes if o.drifted],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "enough_data": self.enough_data,
            "skipped_columns": list(self.skipped_columns),
            "notes": list(self.notes),
        }


def infer_column_kinds(
    frame: pd.DataFrame, columns: Sequence[str], max_categorical_values: int = 5
) -> dict[str, ColumnKind]:
    """Numeric or categorical per column, from the reference frame (see `DriftPolicy.max_categorical_values`)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"columns not in the frame: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    kinds: dict[str, ColumnKind] = {}
    for col in columns:
        s = frame[col]
        few_values = s.nunique(dropna=True) <= max_categorical_values
        categorical = pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s) or few_values
        kinds[col] = "categorical" if categorical else "numeric"
    return kinds


def outcome_shift(
    group: str,
    reference_positives: int,
    reference_rows: int,
    current_positives: int,
    current_rows: int,
    policy: DriftPolicy,
    z: float = 1.96,
) -> OutcomeShift:
    """Compare two binary outcome rates by their log odds ratio (Haldane-corrected), with a CI guard (`z`)."""
    if reference_rows <= 0 or current_rows <= 0:
        raise DataError(f"outcome group {group!r}: both windows need rows (got {reference_rows}, {current_rows})")
    a, b = reference_positives + 0.5, reference_rows - reference_positives + 0.5
    c, d = current_positives + 0.5, current_rows - current_positives + 0.5
    lor = math.log((c / d) / (a / b))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    ci_low = max(0.0, abs(lor) - z * se)
    supported = min(reference_positives, current_positives) >= policy.outcome_min_positives or (
        # a rate collapsing to (near) zero is itself the signal: judge it if the reference had the support
        reference_positives >= policy.outcome_min_positives
        and current_rows * reference_positives / reference_rows >= policy.outcome_min_positives
    )
    drifted = supported and abs(lor) >= policy.outcome_log_odds_threshold and ci_low > 0.0
    return OutcomeShift(
        group=group,
        reference_rate=reference_positives / reference_rows,
        current_rate=current_positives / current_rows,
        reference_rows=reference_rows,
        current_rows=current_rows,
        log_odds_ratio=lor,
        ci_low=ci_low,
        supported=supported,
        drifted=drifted,
    )


def family_z(groups: int, level: float = 0.95) -> float:
    """Two-sided z for a family of `groups` intervals (Bonferroni): checking 20 actions at 95% each would see a
    false shift in one of them two times in three; the family keeps the chance of any false alarm at 5%."""
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / (2 * max(1, groups))))


def calibration_shift(
    group: str, positives: int, rows: int, expected_rate: float, policy: DriftPolicy, z: float = 1.96
) -> OutcomeShift:
    """Observed outcome rate vs the rate the model predicted for the same rows (calibration-in-the-large).

    For served traffic this is the outcome check that holds up: the serving policy picks the actions it expects
    to win, so comparing served acceptance with the training set's (chosen by another policy) would flag the
    policy change itself; comparing it with the champion's own predictions on the served rows flags only a world
    that stopped behaving as the model learned. Same effect-size + 95% CI rule as `outcome_shift`; the
    uncertainty is the observed side's only (the expectation is a mean of many predictions).
    """
    if rows <= 0:
        raise DataError(f"outcome group {group!r}: no rows with an outcome")
    if not 0.0 < expected_rate < 1.0:
        raise DataError(f"outcome group {group!r}: expected rate must be in (0, 1), got {expected_rate}")
    c, d = positives + 0.5, rows - positives + 0.5
    lor = math.log((c / d) / (expected_rate / (1 - expected_rate)))
    se = math.sqrt(1 / c + 1 / d)
    ci_low = max(0.0, abs(lor) - z * se)
    supported = max(positives, expected_rate * rows) >= policy.outcome_min_positives
    return OutcomeShift(
        group=group,
        reference_rate=expected_rate,
        current_rate=positives / rows,
        reference_rows=rows,
        current_rows=rows,
        log_odds_ratio=lor,
        ci_low=ci_low,
        supported=supported,
        drifted=supported and abs(lor) >= policy.outcome_log_odds_threshold and ci_low > 0.0,
    )


def calibration_shifts(
    frame: pd.DataFrame, label: str, score: str, policy: DriftPolicy, group_by: str | None = None
) -> list[OutcomeShift]:
    """`calibration_shift` overall ("all") and per `group_by` value, on rows with a known 0/1 label and a score."""
    for col in (label, score, *([group_by] if group_by else [])):
        if col not in frame.columns:
            raise DataError(f"frame has no column {col!r} for the outcome check")
    known = frame[frame[label].notna() & frame[score].notna()]
    if known.empty:
        return []
    y, p = known[label].astype(float), known[score].astype(float).clip(1e-6, 1 - 1e-6)
    groups = sorted(known.groupby(group_by).groups.items(), key=lambda kv: str(kv[0])) if group_by else []
    z = family_z(1 + len(groups))
    shifts = [calibration_shift("all", int(y.sum()), len(y), float(p.mean()), policy, z)]
    for key, idx in groups:
        shifts.append(
            calibration_shift(f"{group_by}={key}", int(y.loc[idx].sum()), len(idx), float(p.loc[idx].mean()), policy, z)
        )
    return shifts


def outcome_shifts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    label: str,
    policy: DriftPolicy,
    group_by: str | None = None,
) -> list[OutcomeShift]:
    """Outcome-rate shifts overall (group "all") and per value of `group_by` (e.g. action_id), labels 0/1."""
    for name, frame in (("reference", reference), ("current", current)):
        if label not in frame.columns:
            raise DataError(f"{name} frame has no label column {label!r}")
        if group_by is not None and group_by not in frame.columns:
            raise DataError(f"{name} frame has no group column {group_by!r}")
    ref_y = reference[label].astype(float)
    cur_y = current[label].astype(float)
    keys: list[object] = []
    if group_by is not None:
        ref_g = ref_y.groupby(reference[group_by]).agg(["sum", "count"])
        cur_g = cur_y.groupby(current[group_by]).agg(["sum", "count"])
        keys = sorted(set(ref_g.index) & set(cur_g.index), key=str)
    z = family_z(1 + len(keys))
    shifts = [outcome_shift("all", int(ref_y.sum()), len(ref_y), int(cur_y.sum()), len(cur_y), policy, z)]
    for key in keys:
        shifts.append(
            outcome_shift(
                f"{group_by}={key}",
                int(ref_g.at[key, "sum"]),
                int(ref_g.at[key, "count"]),
                int(cur_g.at[key, "sum"]),
                int(cur_g.at[key, "count"]),
                policy,
                z,
            )
        )
    return shifts


def decide_drift(
    policy: DriftPolicy,
    features: Sequence[ColumnDrift],
    predictions: Sequence[ColumnDrift] = (),
    outcomes: Sequence[OutcomeShift] = (),
    reference_rows: int = 0,
    current_rows: int = 0,
    skipped_columns: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> DriftVerdict:
    """Apply the policy's rules to measured drift: a pure function, the one place that decides "retrain or not".

    `notes` are carried into the verdict as they are (what could not be judged and why); they never decide.
    """
    enough = min(reference_rows, current_rows) >= policy.min_rows
    n_drifted = sum(c.drifted for c in features)
    share = n_drifted / len(features) if features else 0.0
    common = {
        "features": tuple(features),
        "predictions": tuple(predictions),
        "outcomes": tuple(outcomes),
        "drifted_share": share,
        "reference_rows": reference_rows,
        "current_rows": current_rows,
        "skipped_columns": tuple(skipped_columns),
        "notes": tuple(notes),
    }
    if not enough:
        reason = (
            f"not enough data to judge: {reference_rows} reference and {current_rows} current rows "
            f"(policy needs {policy.min_rows} on each side)"
        )
        return DriftVerdict(drifted=False, reasons=(reason,), enough_data=False, **common)

    reasons = [
        *_input_reasons(policy, features, n_drifted, share),
        *(
            f"prediction drift on {c.column} ({c.method} {c.score:.3f} >= {c.threshold:g})"
            for c in predictions
            if c.drifted
        ),
        *(
            f"outcome rate shifted in {o.group}: {o.reference_rate:.2%} -> {o.current_rate:.2%} "
            f"(log odds ratio {o.log_odds_ratio:+.2f}, |LOR| >= {policy.outcome_log_odds_threshold:g})"
            for o in outcomes
            if o.drifted
        ),
    ]
    if not reasons:
        inputs = (
            f"{n_drifted} of {len(features)} inputs drifted ({share:.0%} < {policy.drift_share:.0%})"
            if features
            else "no input checked"
        )
        reasons.append(f"no drift: {inputs}, no score drift, no outcome shift")
        return DriftVerdict(drifted=False, reasons=tuple(reasons), **common)
    return DriftVerdict(drifted=True, reasons=tuple(reasons), **common)


def _input_reasons(policy: DriftPolicy, features: Sequence[ColumnDrift], n_drifted: int, share: float) -> list[str]:
    """The input rules that fired: share of drifted inputs, an input moved far, key inputs drifted."""
    reasons: list[str] = []
    if features and share >= policy.drift_share:
        top = sorted((c for c in features if c.drifted), key=lambda c: -c.score / c.threshold)[:5]
        reasons.append(
            f"{n_drifted} of {len(features)} inputs drifted ({share:.0%} >= {policy.drift_share:.0%}), "
            f"most: {', '.join(f'{c.column} ({c.method} {c.score:.3f})' for c in top)}"
            + (f" (+{n_drifted - len(top)} more in the report)" if n_drifted > len(top) else "")
        )
    severe = [c for c in features if c.drifted and c.score >= policy.severe_factor * c.threshold]
    if severe:
        reasons.append(
            f"{len(severe)} input(s) moved far (>= {policy.severe_factor:g} x threshold): "
            + ", ".join(f"{c.column} ({c.method} {c.score:.3f})" for c in severe)  # every one it counts
        )
    if policy.key_features:
        by_name = {c.column: c for c in features}
        key_drifted = [by_name[k] for k in policy.key_features if k in by_name and by_name[k].drifted]
        if len(key_drifted) >= policy.key_features_min_drifted:
            reasons.append(
                f"{len(key_drifted)} key inputs drifted (>= {policy.key_features_min_drifted}): "
                + ", ".join(f"{c.column} ({c.method} {c.score:.3f})" for c in key_drifted)
            )
    return reasons


def sample_rows(frame: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """A fixed-size seeded random sample (rows kept in their original order); the frame itself if it is small."""
    if n is None or len(frame) <= n:
        return frame
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(frame), size=n, replace=False))
    return frame.iloc[idx]
