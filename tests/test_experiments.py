"""Experiment specs (every shipped one loads; bad ones fail clearly) and the experiment runner's comparison table."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextbest.errors import ConfigError
from nextbest.settings import Settings
from training.experiments import (
    ExperimentSpec,
    VariantResult,
    comparison_table,
    load_spec,
    mlflow_ui_command,
    resolve_exclusions,
    run_experiment,
    shipped_specs,
)


def test_every_shipped_spec_loads_and_validates() -> None:
    paths = shipped_specs()
    names = {p.stem for p in paths}
    assert {"nba_realtime_context", "churn_horizon"} <= names
    for path in paths:
        spec = load_spec(path)
        assert spec.name == path.stem, "the file name and the spec name must agree"
        assert len(spec.variants) >= 2


def test_specs_load_by_bare_name() -> None:
    spec = load_spec("churn_horizon")
    assert spec.model == "churn"
    assert [spec.resolved(v)["horizon_days"] for v in spec.variants] == [30, 60]


def test_nba_context_spec_removes_context_only_in_the_second_variant() -> None:
    spec = load_spec("nba_realtime_context")
    with_ctx, without_ctx = spec.variants
    assert with_ctx.exclude_features == ()
    assert without_ctx.exclude_features
    assert spec.resolved(with_ctx)["seed"] == spec.resolved(without_ctx)["seed"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: x\ntitle: t\nmodel: nba\nvariants:\n  - name: a\n    exclude_featurs: [foo]\n",
    )
    with pytest.raises(ConfigError, match="exclude_featurs"):
        load_spec(path)


def test_horizon_on_an_nba_experiment_is_rejected(tmp_path: Path) -> None:
    from nextbest.project import load_project

    path = _write(tmp_path, "name: x\ntitle: t\nmodel: nba\nvariants:\n  - name: a\n    horizon_days: 30\n")
    with pytest.raises(ConfigError, match="closes_within"):
        load_spec(path).check_against(load_project())
    unknown = _write(tmp_path, "name: x\ntitle: t\nmodel: nba2\nvariants:\n  - name: a\n")
    with pytest.raises(ConfigError, match="nba2"):
        load_spec(unknown).check_against(load_project())


def test_duplicate_variants_and_missing_specs_fail_clearly(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ntitle: t\nmodel: churn\nvariants:\n  - name: a\n  - name: a\n")
    with pytest.raises(ConfigError, match="duplicate"):
        load_spec(path)
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_is_frozen() -> None:
    spec = load_spec("churn_horizon")
    with pytest.raises(Exception, match="frozen"):
        spec.trials = 99  # type: ignore[misc]


def test_exclusion_patterns_resolve_and_a_pattern_matching_nothing_is_an_error() -> None:
    features = ["age", "hours_since_airport_checkin", "hours_since_complaint", "strength_travel", "income"]
    assert resolve_exclusions(["hours_since_*", "income"], features) == [
        "hours_since_airport_checkin",
        "hours_since_complaint",
        "income",
    ]
    with pytest.raises(ConfigError, match="matches no feature"):
        resolve_exclusions(["hours_sinec_*"], features)


def _spec() -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": "demo",
            "title": "demo",
            "model": "churn",
            "trials": 2,
            "variants": [{"name": "h30", "horizon_days": 30}, {"name": "h60", "horizon_days": 60, "trials": 5}],
        }
    )


def test_comparison_table_has_one_row_per_variant_with_delta_and_best() -> None:
    spec = _spec()
    results = [
        VariantResult("h30", "r1", {"roc_auc": 0.70, "pr_auc": 0.1, "log_loss": 0.2}),
        VariantResult("h60", "r2", {"roc_auc": 0.74, "pr_auc": 0.2, "log_loss": 0.3}),
    ]
    table = comparison_table(spec, results)
    assert list(table["variant"]) == ["h30", "h60"]
    assert list(table["trials"]) == [2, 5]
    assert list(table["horizon_days"]) == [30, 60]
    assert table["delta_roc_auc"].tolist() == pytest.approx([0.0, 0.04])
    assert table["best"].tolist() == [False, True]
    assert table["ece"].isna().all()  # not logged -> NaN, not an error


def test_run_experiment_trains_every_variant_into_one_experiment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    spec = _spec()
    calls = []

    def trainer(s: Settings, sp: ExperimentSpec, v, experiment: str) -> VariantResult:
        calls.append((v.name, sp.resolved(v)["horizon_days"], experiment))
        return VariantResult(v.name, f"run-{v.name}", {"roc_auc": 0.6 + len(calls) / 100})

    result = run_experiment(spec, settings, trainer=trainer)
    assert calls == [("h30", 30, "nextbest-experiment-demo"), ("h60", 60, "nextbest-experiment-demo")]
    assert result.table()["best"].tolist() == [False, True]
    assert result.ui_command() == mlflow_ui_command(settings.mlflow_tracking_uri)
    assert result.ui_command().startswith("mlflow ui --backend-store-uri sqlite:///")


def test_cli_lists_shipped_experiments_and_rejects_unknown_specs() -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["experiment", "list"])
    assert listed.exit_code == 0, listed.output
    assert "nba_realtime_context" in listed.output and "churn_horizon" in listed.output
    unknown = runner.invoke(app, ["experiment", "run", "no_such_experiment"])
    assert isinstance(unknown.exception, ConfigError)
    assert "not found" in str(unknown.exception)


def test_the_ladder_stage3_removes_the_same_context_features_as_the_context_experiment() -> None:
    from feature_repo.specs import NBA_SERVICE, service_features
    from training.evaluate import context_features
    from training.experiments import resolve_exclusions

    names = service_features(NBA_SERVICE)
    without = {v.name: v for v in load_spec("nba_realtime_context").variants}["without_context"]
    removed = resolve_exclusions(without.exclude_features, names)
    assert removed and sorted(removed) == sorted(context_features(names))
    assert not [f for f in removed if f.startswith("channel_")]  # the channel is known in batch too
