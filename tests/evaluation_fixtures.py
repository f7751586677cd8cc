"""A small trained world shared by the evaluation end-to-end test and the training-notebook test.

Built once per pytest session under the session's base temp dir (simulate -> feature tables -> Feast apply ->
churn and NBA models with a tiny tuning budget), with a marker file so a second test module reuses it instead of
rebuilding (session fixtures outside conftest.py are per module; the marker makes the work itself shared).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings

WORLD = {"customers": 500, "days": 90, "seed": 11}
TRIALS = 2
_MARKER = "READY"


def build_trained_world(home: Path) -> Settings:
    """Simulate, build and apply features, train both models; idempotent thanks to the marker file."""
    settings = Settings(home=home)
    if (home / _MARKER).is_file():
        return settings
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    subprocess.run(
        [
            str(Path(sys.executable).with_name("nextbest")),
            "simulate",
            "--customers",
            str(WORLD["customers"]),
            "--days",
            str(WORLD["days"]),
            "--seed",
            str(WORLD["seed"]),
            "--out",
            str(settings.world_dir),
        ],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
    )
    from training_fixtures import promote_even_below_floor

    from nextbest import features
    from training.pipeline import train_model
    from training.tune import TuningConfig

    features.features_of(settings).build()
    features.features_of(settings).apply()
    # Few, short, single-threaded trials: the tests judge the evaluation, not the models' quality, and on a busy
    # 2-core machine one XGBoost thread is several times faster than two.
    config = TuningConfig(max_rounds=80, early_stopping_rounds=10, nthread=1)
    # Churn on a 14-day horizon: its split trains only on labels known before the holdout starts, and 30-day
    # labels of a 90-day world are known only for snapshots before the warm-up ends.
    for model, horizon in (("churn", 14), ("nba", None)):
        trained = train_model(settings, model, trials=TRIALS, config=config, horizon_days=horizon)
        promote_even_below_floor(settings, model, trained)
    (home / _MARKER).write_text("ok\n")
    return settings


@pytest.fixture(scope="module")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a small simulated world with registered `churn` and `nba` champions (shared per session)."""
    return build_trained_world(tmp_path_factory.getbasetemp() / "nextbest-eval-world")
