"""The shared trainer's stratified split: every part keeps the class shares, it is seeded, and it never loses a row."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nextbest.errors import DataError
from training.datasets import LABEL, TIMESTAMP, split_training_frame, stratified_split


def _frame(n: int = 354, positives: int = 30) -> pd.DataFrame:
    # Positives concentrated in the OLDEST rows, as Berka's bad loans are: a time split starves validation.
    y = np.zeros(n, dtype=int)
    y[: positives - 2] = 1
    y[-2:] = 1
    ts = pd.date_range("1997-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame({"loan_id": np.arange(n), TIMESTAMP: ts, "x": np.arange(n) * 0.5, LABEL: y})


def test_stratified_split_keeps_the_class_shares_in_every_part_and_every_row_once() -> None:
    frame = _frame()
    s = stratified_split(frame, valid_fraction=0.2, test_fraction=0.2, seed=7)
    ids = np.concatenate([s.train.loan_id, s.valid.loan_id, s.test.loan_id])
    assert sorted(ids) == list(frame.loan_id)
    assert [int(p[LABEL].sum()) for p in (s.train, s.valid, s.test)] == [18, 6, 6]
    assert (len(s.valid), len(s.test)) == (71, 71)
    with pytest.raises(DataError, match="validation split holds one class only"):  # the case it fixes
        split_training_frame(frame, valid_fraction=0.2, test_fraction=0.2, method="time")


def test_stratified_split_is_seeded() -> None:
    frame = _frame()
    a, b = (stratified_split(frame, seed=3) for _ in range(2))
    c = stratified_split(frame, seed=4)
    assert list(a.valid.loan_id) == list(b.valid.loan_id)
    assert list(a.valid.loan_id) != list(c.valid.loan_id)


def test_stratified_split_refuses_a_class_too_rare_to_split_and_a_purge_gap() -> None:
    frame = _frame(positives=2)
    frame.loc[:, LABEL] = 0
    frame.loc[0, LABEL] = 1
    with pytest.raises(DataError, match="one class only"):
        stratified_split(frame, seed=1)
    with pytest.raises(DataError, match="time split only"):
        split_training_frame(_frame(), method="stratified", gap=timedelta(days=30))
