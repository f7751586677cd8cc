"""An onboarded `event_within` label on repeated snapshots: no label of the train/validation rows may depend on an
event inside the test period (the simulated bank's churn leak, docs/evaluation.md). Labels and splits only, no
Feast: the trainer's split of the label rows with the `label_known_at` column the training set carries."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nextbest.onboarding.config import load_config
from nextbest.onboarding.datasets import label_frame, label_known_at
from nextbest.onboarding.tables import connect
from nextbest.settings import REPO_ROOT
from training.datasets import LABEL_KNOWN, split_training_frame

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
BERKA = REPO_ROOT / "configs/berka.yaml"
BERKA_DIR = Path(os.environ.get("NEXTBEST_BERKA_DIR") or REPO_ROOT.parent / "shared/data/berka")


def _labels(path: Path, model: str) -> tuple[pd.DataFrame, object]:
    config = load_config(path)
    spec = config.model(model)
    return label_frame(connect(config), config, spec), spec


def _weekly_flat(tmp_path: Path) -> Path:
    """The flat example scored weekly for a response within 30 days: each window holds four later snapshots."""
    raw = yaml.safe_load(FLAT.read_text())
    raw["data_dir"] = str(FLAT.parent)
    raw["entities"]["customer"]["snapshots"]["every"] = "week"
    path = tmp_path / "flat_weekly.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _crossing(train_valid: pd.DataFrame, test: pd.DataFrame, horizon_days: int) -> int:
    """Train/validation rows whose label window [t, t + H) runs past the test split's start."""
    start = test["event_timestamp"].min()
    return int((train_valid["event_timestamp"] + pd.Timedelta(days=horizon_days) > start).sum())


def test_weekly_snapshots_with_a_30_day_horizon_learn_only_labels_known_before_the_test_split(tmp_path: Path) -> None:
    labels, spec = _labels(_weekly_flat(tmp_path), "flat_propensity")
    horizon = spec.label.horizon_days  # type: ignore[attr-defined]
    plain = split_training_frame(labels)
    # The leak, measured: a plain time split's last training weeks are labelled by responses in the test period.
    assert _crossing(pd.concat([plain.train, plain.valid]), plain.test, horizon) > 0
    known = label_known_at(labels, spec)  # type: ignore[arg-type]
    assert known is not None
    split = split_training_frame(labels.assign(**{LABEL_KNOWN: known}), entity="customer_id")
    assert split.test.equals(plain.test.assign(**{LABEL_KNOWN: known[plain.test.index]}))  # the same holdout
    assert _crossing(pd.concat([split.train, split.valid]), split.test, horizon) == 0
    assert not set(split.train["customer_id"]) & set(split.valid["customer_id"])


def test_berka_quarterly_snapshots_with_a_90_day_horizon_need_no_label_known_split() -> None:
    """Quarterly / 90 days: no label window reaches the next snapshot, so no column is carried and the plain time
    split holds no label decided in the test period (if this fails, Berka's horizon or step changed: its training
    set then carries `label_known_at`; re-measure the docs' figures)."""
    if not (BERKA_DIR / "account.csv").is_file():
        pytest.skip(f"Berka data not found at {BERKA_DIR} (NEXTBEST_BERKA_DIR)")
    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(BERKA_DIR))
    labels, spec = _labels(BERKA, "berka_propensity")
    assert label_known_at(labels, spec) is None  # type: ignore[arg-type]
    plain = split_training_frame(labels, test_fraction=spec.validation.test_fraction)
    assert _crossing(pd.concat([plain.train, plain.valid]), plain.test, 90) == 0
    assert int(plain.test["label"].sum()) > 0


def test_flat_monthly_30_day_label_is_split_by_label_known_time() -> None:
    """Monthly / 30 days: February 2024 has 29 days, so the 1 February window holds 1 March; the set carries the
    column (its shipped time split's test start, 1 November, was not inside any window)."""
    labels, spec = _labels(FLAT, "flat_propensity")
    known = label_known_at(labels, spec)  # type: ignore[arg-type]
    assert known is not None
    plain = split_training_frame(labels)
    assert _crossing(pd.concat([plain.train, plain.valid]), plain.test, 30) == 0
    split = split_training_frame(labels.assign(**{LABEL_KNOWN: known}), entity="customer_id")
    assert _crossing(pd.concat([split.train, split.valid]), split.test, 30) == 0
