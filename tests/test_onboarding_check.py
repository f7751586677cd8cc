"""Tables as they come: `nextbest onboard check` (the constant date + `split: time` case, a leaking column, a date
known only later) in seconds and before anything is built; a table with no id (generated row key) and one with
no date (extract date, stratified folds); text categories inferred, frozen, and new values in `_other`; and
`onboard all` skipping the steps that are up to date."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nextbest.onboarding.check import check_project
from nextbest.onboarding.config import load_config
from nextbest.settings import REPO_ROOT, Settings

EXAMPLES = REPO_ROOT / "configs/examples"
CALLS, CUSTOMERS = EXAMPLES / "flat_calls.yaml", EXAMPLES / "flat_customers.yaml"


def _variant(tmp_path: Path, source: Path, edit) -> Path:
    """A copy of an example project file (data_dir pointing at the examples) with `edit(raw)` applied."""
    raw = yaml.safe_load(source.read_text())
    raw["data_dir"] = str(EXAMPLES)
    edit(raw)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cli():
    from nextbest.cli import app

    return app


def test_check_catches_a_constant_date_with_split_time_before_anything_is_built(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    def time_split(raw: dict) -> None:
        raw["models"][0]["split"] = "time"

    path = _variant(tmp_path, CUSTOMERS, time_split)
    started = time.perf_counter()
    result = CliRunner().invoke(
        _cli(), ["onboard", "check", "--project", str(path)], env={"NEXTBEST_HOME": str(tmp_path)}
    )
    seconds = time.perf_counter() - started
    print(f"onboard check (constant date + split: time): {seconds:.1f} s through the CLI")
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "error: model customer_churn: split: time needs rows on at least 3 dates" in out
    assert "all 2,000 rows share one date (2024-12-31)" in out and "remove `split: time`" in out
    assert not (tmp_path / "projects").exists()  # nothing was built


def test_check_names_a_column_known_only_after_the_outcome(tmp_path: Path) -> None:
    def with_duration(raw: dict) -> None:
        raw["feature_views"][0]["attributes"].append({"name": "call_duration", "column": "duration"})

    started = time.perf_counter()
    report = check_project(load_config(_variant(tmp_path, CALLS, with_duration)))
    print(f"onboard check (leaking column): {time.perf_counter() - started:.1f} s, {report.seconds:.1f} s inside")
    assert report.ok  # a warning: the data scientist decides
    (leak,) = [f for f in report.of("warning") if f.subject == "feature call_duration"]
    assert "leakage candidate" in leak.message and "ROC-AUC 0.8" in leak.message
    assert not [f for f in report.of("warning") if f.subject != "feature call_duration"]


def test_check_warns_about_a_date_that_comes_after_the_snapshot(tmp_path: Path) -> None:
    frame = pd.read_csv(EXAMPLES / "flat_customers.csv")
    frame["left_on"] = pd.Timestamp("2025-03-01").strftime("%Y-%m-%d")  # after the extract: known only later
    frame.to_csv(tmp_path / "flat_customers.csv", index=False)

    def with_exit_date(raw: dict) -> None:
        raw["tables"]["customers"]["columns"]["left_on"] = "date"
        raw["feature_views"][0]["attributes"].append({"name": "days_since_left", "column": "left_on",
                                                      "transform": "days_since"})  # fmt: skip

    path = _variant(tmp_path, CUSTOMERS, with_exit_date)
    raw = yaml.safe_load(path.read_text())
    raw["data_dir"] = str(tmp_path)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    report = check_project(load_config(path))
    warnings = {f.subject: f.message for f in report.of("warning")}
    assert "after the snapshot" in warnings["feature days_since_left"]
    assert "2000 of 2000 rows have left_on on or after data_end" in warnings["table customers"]


def test_a_table_without_a_date_is_split_and_validated_stratified_and_says_so() -> None:
    report = check_project(load_config(CUSTOMERS))
    assert report.ok and not report.of("warning")
    plan = report.plans["customer_churn"]
    assert (plan.split, plan.validation, plan.dates) == ("stratified", "repeated_cv", 1)
    assert "no time order to follow" in plan.describe()
    assert any("no date: 'extracted' = 2024-12-31" in f.message for f in report.of("note"))


def test_a_table_without_an_id_gets_a_row_key_and_rolling_origin_by_month() -> None:
    from nextbest.onboarding.tables import connect

    config = load_config(CALLS)
    con = connect(config)
    keys = [r[0] for r in con.execute("SELECT call_id FROM calls ORDER BY call_id").fetchall()]
    assert keys == list(range(1, 3_001))
    first = con.execute("SELECT call_date, age, job FROM calls WHERE call_id = 1").fetchone()
    assert (str(first[0].date()), first[1], first[2]) == ("2024-01-01", 28, "management")  # the file's first row
    plan = check_project(config).plans["call_subscribed"]
    assert (plan.split, plan.validation, plan.period, plan.periods) == ("time", "time_split", "month", 12)


def test_text_categories_are_inferred_frozen_at_the_first_build_and_new_values_go_to_other(tmp_path: Path) -> None:
    from nextbest.onboarding.categories import read_frozen
    from nextbest.onboarding.features import project_paths, write_feature_tables

    calls = pd.read_csv(EXAMPLES / "flat_calls.csv")
    calls.to_csv(tmp_path / "flat_calls.csv", index=False)
    config = load_config(_variant(tmp_path, CALLS, lambda raw: raw.update(data_dir=str(tmp_path))))
    settings = Settings(home=tmp_path / "home")
    write_feature_tables(config, settings)
    offline = project_paths(config, settings).offline_dir
    frozen = read_frozen(offline)
    assert frozen is not None and len(frozen["call_profile.job"]) == 12
    assert frozen["call_profile.channel"] == ["cellular", "telephone"]
    # A new value in the bank's next extract: the list stays frozen, the value counts as other.
    calls.loc[calls.index[-5:], "channel"] = "video"
    calls.to_csv(tmp_path / "flat_calls.csv", index=False)
    write_feature_tables(config, settings)
    assert read_frozen(offline) == frozen
    table = pd.read_parquet(offline / "call_profile.parquet").set_index("call_id")
    assert {"channel_cellular", "channel_telephone", "channel_other", "job_other"} <= set(table.columns)
    assert table.loc[2_996:3_000, "channel_other"].eq(1.0).all()
    assert table.loc[2_996:3_000, ["channel_cellular", "channel_telephone"]].eq(0.0).all().all()
    assert table["channel_other"].sum() == 5


@pytest.mark.slow
def test_onboard_all_trains_the_no_id_and_no_date_examples_and_skips_what_is_up_to_date(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nextbest.models.artefact import load_model

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    env = {"NEXTBEST_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    first = runner.invoke(_cli(), ["onboard", "all", "--project", str(CUSTOMERS), "--trials", "3"], env=env)
    out = " ".join(first.output.split())
    assert first.exit_code == 0, first.output
    # The plan is printed by the check, before the build.
    assert out.index("no time order to follow") < out.index("customer_state.parquet")
    print(first.output)
    assert "customer_churn: version 1" in out and "(95% bootstrap); plain XGBoost on the same rows" in out
    again = runner.invoke(_cli(), ["onboard", "all", "--project", str(CUSTOMERS), "--trials", "3"], env=env)
    out = " ".join(again.output.split())
    assert again.exit_code == 0, again.output
    for step in ("build", "apply", "materialize", "train"):
        assert f"{step}: up to date" in out
    calls = runner.invoke(_cli(), ["onboard", "all", "--project", str(CALLS), "--trials", "3"], env=env)
    assert calls.exit_code == 0, calls.output
    assert "rolling origin over the last 5 months" in " ".join(calls.output.split())
    settings = Settings(home=tmp_path / "home", project=CALLS)
    model = load_model("call_subscribed", settings=settings, alias="challenger")
    assert "job_other" in model.feature_names and "channel_cellular" in model.feature_names
