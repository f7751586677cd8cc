"""Segments (nextbest/segments.py): the rule language, validation against a project's features, one evaluator for a
frame and a row, the policy's segment rules, and membership as of a date through Feast (simulated bank, Berka)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.catalogue import load_catalogue
from nextbest.errors import ConfigError
from nextbest.features.project import feature_project
from nextbest.policy import DecisionPolicy, PolicyConfig, load_policy
from nextbest.project import load_project
from nextbest.segments import (
    All,
    AnyOf,
    Bare,
    Between,
    Compare,
    Member,
    Not,
    SegmentError,
    bind_segments,
    feature_schema,
    members_as_of,
    parse_as_of,
    parse_rule,
    parse_segments,
    project_segments,
)
from nextbest.settings import REPO_ROOT, Settings

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
BERKA = REPO_ROOT / "configs/berka.yaml"


@pytest.fixture(scope="module")
def simbank():  # type: ignore[no-untyped-def]
    project = load_project()
    return project, feature_project(project, Settings(home=Path("/nonexistent-home")))


def _bind(project_and_features, rules: dict[str, str]):  # type: ignore[no-untyped-def]
    project, features = project_and_features
    book = parse_segments(rules, "test")
    return bind_segments(book, feature_schema(project, features, book))


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Genome-like rows with missing values sprinkled in (None and NaN, as online reads and Feast give them)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "segment_affluent": rng.random(n) < 0.2,
            "segment_small_business": rng.random(n) < 0.1,
            "age": rng.integers(16, 90, n),
            "savings_balance": rng.lognormal(8, 1.5, n),
            "investment_balance": rng.lognormal(7, 2, n),
            "travel_amount_30d": np.where(rng.random(n) < 0.5, 0.0, rng.gamma(2, 200, n)),
            "travel_views_30d": rng.integers(0, 4, n),
            "has_travel_card": rng.random(n) < 0.3,
            "risk_level": rng.integers(0, 3, n),
            "is_vulnerable": rng.random(n) < 0.05,
            "fees_amount_30d": rng.gamma(1, 40, n),
        }
    ).astype("float64")
    for col in frame.columns:
        frame.loc[rng.random(n) < 0.03, col] = np.nan
    return frame


# ---------------------------------------------------------------- the language


def test_rules_parse_with_not_before_and_before_or_and_parentheses() -> None:
    tree = parse_rule("a OR b AND NOT c")
    assert tree == AnyOf((Bare("a", 0), All((Bare("b", 5), Not(Bare("c", 15))))))
    assert parse_rule("(a or b) and not c") == All((AnyOf((Bare("a", 1), Bare("b", 6))), Not(Bare("c", 17))))
    assert parse_rule("age between 25 and 40") == Between("age", 25.0, 40.0, 0)
    assert parse_rule("segment in [mass, 'affluent']") == Member("segment", ("mass", "affluent"), False, 0)
    assert parse_rule("n not in [1, 2]") == Member("n", (1.0, 2.0), True, 0)
    assert parse_rule("x = -3_000.5") == Compare("x", "==", -3000.5, 0)
    assert parse_rule('statement == "POPLATEK MESICNE"') == Compare("statement", "==", "POPLATEK MESICNE", 0)
    assert parse_rule("flag == true") == Compare("flag", "==", True, 0)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("   ", "empty rule"),
        ("a AND", "expected a feature or segment name, found the end at column 6"),
        ("a AND (b", "expected ')'"),
        ("x >", "expected a value"),
        ("a = = 1", "expected a value"),
        ("a ~ 1", "unexpected '~' at column 3"),
        ("a b", "expected AND, OR or the end"),
        ("x between 5 and 1", "the low bound is above the high"),
        ("x in [1, 2", "expected ']'"),
        ("import os", "expected AND, OR or the end"),
        ("__import__('os').system('x')", "unexpected '.' at column 17"),
        ("(" * 60 + "a" + ")" * 60, "nested deeper than"),
    ],
)
def test_a_rule_that_does_not_parse_is_a_one_line_error_naming_segment_and_column(rule: str, message: str) -> None:
    with pytest.raises(SegmentError) as err:
        parse_segments({"bad": {"rule": rule}}, "segments.yaml")
    text = str(err.value)
    assert message in text
    assert "\n" not in text and "segment 'bad'" in text and text.startswith("segments.yaml")


def test_segments_referring_to_each_other_in_a_cycle_are_an_error() -> None:
    for rules, cycle in (
        ({"a": "b", "b": "a"}, "a -> b -> a"),
        ({"a": "a"}, "a -> a"),
        ({"a": "x > 1 AND b", "b": "c OR y", "c": "NOT a"}, "a -> b -> c -> a"),
    ):
        with pytest.raises(SegmentError, match=cycle):
            parse_segments(rules, "test")
    with pytest.raises(SegmentError, match="'b' is a segment, not a feature"):
        parse_segments({"a": "b > 1", "b": "x"}, "test")
    book = parse_segments({"a": "b AND c", "b": "c", "c": "age > 1"}, "test")  # a diamond is no cycle
    assert book.references("a") == ("b", "c")


# ---------------------------------------------------------------- validation against the features


def test_an_unknown_feature_names_the_segment_the_feature_and_the_known_features(simbank) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SegmentError) as err:
        _bind(simbank, {"rich": "savings_balanse >= 25000"})
    text = str(err.value)
    assert "\n" not in text
    assert "segment 'rich'" in text and "'savings_balanse'" in text and "did you mean savings_balance" in text
    assert "known features:" in text and "has_travel_card" in text and "risk_band" in text


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("savings_balance", "is a number, not a flag"),
        ("age == old", "'old' is text"),
        ("segment == rich", "has no value 'rich'; its values: affluent, small_business, mass"),
        ("segment > mass", "unordered category"),
        ("segment", "is a category"),
        ("risk_band between 1 and 2", "cannot be used with between"),
        ("segment in [mass, 3]", "has no value 3.0"),
        ("hours_since_airport_checkin < 24", "unknown feature"),  # request-time context is not a segment input
    ],
)
def test_a_feature_of_the_wrong_kind_is_an_error(simbank, rule: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SegmentError, match=message):
        _bind(simbank, {"s": rule})


def test_a_segment_named_like_a_feature_is_refused(simbank) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SegmentError, match="has the name of a feature"):
        _bind(simbank, {"age": "tenure_days > 1"})


def test_every_shipped_project_binds_its_segments() -> None:
    for path in (None, BERKA):
        project = load_project(path)
        segments = project_segments(project, feature_project(project, Settings(home=Path("/nonexistent-home"))))
        assert len(segments.names) >= 5
        assert all(segments.reads(n) for n in segments.names)
    with pytest.raises(ConfigError, match="declares no segments"):
        flat = load_project(FLAT)
        project_segments(flat, feature_project(flat, Settings(home=Path("/nonexistent-home"))))


# ---------------------------------------------------------------- evaluation


def test_frame_and_single_row_evaluation_agree_and_match_the_rule(simbank) -> None:  # type: ignore[no-untyped-def]
    segments = project_segments(*simbank)
    frame = _frame(4000)
    inside = segments.evaluate("travel_prospects", frame)
    f = frame.fillna({"segment_affluent": 0.0})
    affluent = (f["segment_affluent"] > 0) & frame[["segment_affluent", "segment_small_business"]].notna().any(axis=1)
    rich = (frame["savings_balance"] >= 25000) | (frame["investment_balance"] >= 25000)
    travel = (frame["travel_amount_30d"] > 0) | (frame["travel_views_30d"] >= 2)
    expected = (affluent | rich) & travel & ~(frame["has_travel_card"] > 0)
    assert (inside == expected.to_numpy()).all() and 100 < inside.sum() < 1000
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")  # an online read: None for missing
    for name in ("travel_prospects", "credit_ready", "young_adults", "mass"):
        batch = segments.evaluate(name, frame)
        assert [segments.contains(name, r) for r in rows[:600]] == batch[:600].tolist(), name
    both = segments.memberships(rows[3], ["travel_prospects", "credit_ready", "mass"])
    assert both == {n for n in ("travel_prospects", "credit_ready", "mass") if segments.contains(n, rows[3])}


def test_a_missing_value_never_matches_a_test_and_not_negates_the_result(simbank) -> None:  # type: ignore[no-untyped-def]
    segments = _bind(simbank, {"old": "age >= 65", "young": "NOT old", "not_40": "age != 40", "cat": "segment == mass"})
    assert segments.contains("old", {"age": None}) is False
    assert segments.contains("not_40", {"age": None}) is False
    assert segments.contains("young", {"age": None}) is True  # two-valued logic: NOT (false)
    assert segments.contains("not_40", {"age": 41}) is True
    unknown = {"segment_affluent": None, "segment_small_business": None}
    assert segments.contains("cat", unknown) is False  # an unknown customer is in no category
    assert segments.contains("cat", {"segment_affluent": 0, "segment_small_business": 0}) is True  # the default
    with pytest.raises(Exception, match="reads feature 'age'"):
        segments.contains("old", {"tenure_days": 3})


def test_risk_band_is_an_ordered_category_and_counts_stand_alone(simbank) -> None:  # type: ignore[no-untyped-def]
    segments = _bind(
        simbank,
        {"safe": "risk_band <= medium", "mid": "risk_band in [medium]", "complainer": "complaints_90d"},
    )
    levels = pd.DataFrame({"risk_level": [0, 1, 2, np.nan, 7], "complaints_90d": [0, 1, 3, np.nan, 0]})
    assert segments.evaluate("safe", levels).tolist() == [True, True, False, False, False]
    assert segments.evaluate("mid", levels).tolist() == [False, True, False, False, False]
    assert segments.evaluate("complainer", levels).tolist() == [False, True, True, False, False]


def test_a_million_rows_evaluate_in_seconds(simbank) -> None:  # type: ignore[no-untyped-def]
    segments = project_segments(*simbank)
    frame = pd.concat([_frame(100_000, seed=s) for s in range(10)], ignore_index=True)
    for col in segments.reads():
        if col not in frame:
            frame[col] = 1.0
    t0 = time.perf_counter()
    inside = segments.evaluate_all(frame)
    seconds = time.perf_counter() - t0
    assert inside.shape == (1_000_000, len(segments.names))
    assert seconds < 20, f"{seconds:.1f} s for 1M rows x {len(segments.names)} segments"


def test_a_table_projects_one_hot_attributes_are_categories() -> None:
    project = load_project(FLAT)
    features = feature_project(project, Settings(home=Path("/nonexistent-home")))
    book = parse_segments(
        {
            "well_off": "customer_segment in [affluent, small_business] AND customer_balance >= 5000",
            "mass_profile": "segment == mass",  # the policy profile's segment flags, same features
            "engaged": "contacts_all AND NOT well_off",
        },
        "test",
    )
    segments = bind_segments(book, feature_schema(project, features, book))
    frame = pd.DataFrame(
        {
            "customer_segment_mass": [1.0, 0.0, 0.0, np.nan],
            "customer_segment_affluent": [0.0, 1.0, 0.0, np.nan],
            "customer_segment_small_business": [0.0, 0.0, 1.0, np.nan],
            "customer_balance": [9000.0, 9000.0, 100.0, 9000.0],
            "contacts_all": [2.0, 1.0, 0.0, 5.0],
        }
    )
    assert segments.evaluate("well_off", frame).tolist() == [False, True, False, False]
    assert segments.evaluate("mass_profile", frame).tolist() == [True, False, False, False]
    assert segments.evaluate("engaged", frame).tolist() == [True, False, False, True]


# ---------------------------------------------------------------- in the project and the policy


def _project_with(tmp_path: Path, extra: str, policy: str = "") -> Path:
    text = FLAT.read_text().replace("data_dir: .", f"data_dir: {FLAT.parent}")
    if policy:
        text = text.replace(
            "  min_propensity: 0.0\n  max_actions: 2\n", f"  min_propensity: 0.0\n  max_actions: 2\n{policy}"
        )
    path = tmp_path / "project.yaml"
    path.write_text(text + extra)
    return path


def test_a_project_declares_segments_inline_or_by_path_and_its_policy_must_name_known_ones(tmp_path: Path) -> None:
    (tmp_path / "segs.yaml").write_text("segments:\n  adults: customer_age >= 30\n")
    assert load_project(_project_with(tmp_path, "segments: segs.yaml\n")).segments.names == ("adults",)
    inline = "segments:\n  adults: {rule: customer_age >= 30, description: grown-ups}\n"
    assert load_project(_project_with(tmp_path, inline)).segments.segments["adults"].description == "grown-ups"
    rule = "  segment_rules: [{segment: seniors, actions: [offer_credit_card]}]\n"
    with pytest.raises(ConfigError, match=r"unknown segment\(s\) \['seniors'\]"):
        load_project(_project_with(tmp_path, inline, rule))
    with pytest.raises(ConfigError, match="a -> a"):
        load_project(_project_with(tmp_path, "segments: {a: a}\n"))


def test_a_policy_segment_rule_offers_an_action_only_to_members_and_weights_them(simbank) -> None:  # type: ignore[no-untyped-def]
    segments = project_segments(*simbank)
    base = load_policy()
    config = PolicyConfig.model_validate(
        {
            **base.model_dump(),
            "segment_rules": [
                {"segment": "travel_prospects", "actions": ["travel_card"]},
                {"segment": "at_risk", "actions": ["mortgage"], "exclude": True},
            ],
            "segment_action_weights": {"affluent": {"travel_insurance": 2.0}},
        }
    )
    with pytest.raises(ConfigError, match="build it with the project's segments"):
        DecisionPolicy(load_catalogue(), config)
    policy = DecisionPolicy(load_catalogue(), config, segments=segments)
    features = {f: 0 for f in segments.reads()}
    features.update(age=40, tenure_days=900, has_current_account=1, risk_level=0, consent_app=1)
    travel_card = load_catalogue().action("travel_card")
    outsider = policy.view(1, features)
    assert outsider.segments == frozenset()
    rejection = policy.eligibility_rule(travel_card, outsider, "app")
    assert rejection is not None and rejection.rule == "eligibility.segment_rule"
    prospect = policy.view(2, {**features, "segment_affluent": 1, "travel_amount_30d": 250.0})
    assert prospect.segments == {"travel_prospects", "affluent"}
    assert policy.eligibility_rule(travel_card, prospect, "app") is None
    leaving = policy.view(3, {**features, "complaints_90d": 1})
    assert policy.eligibility_rule(load_catalogue().action("mortgage"), leaving, "app").detail == "in segment at_risk"
    insurance = load_catalogue().action("travel_insurance")
    ranked, _ = policy.arbitrate([insurance], [0.1], prospect, "app", _context(), features, None)
    plain, _ = policy.arbitrate([insurance], [0.1], outsider, "app", _context(), features, None)
    assert ranked[0].priority == pytest.approx(2 * plain[0].priority)


def _context():  # type: ignore[no-untyped-def]
    from nextbest.policy import DecisionContext

    return DecisionContext()


# ---------------------------------------------------------------- membership as of a date, through Feast


def _latest(table: Path, key: str, as_of: pd.Timestamp, ttl: timedelta | None) -> pd.DataFrame:
    frame = pd.read_parquet(table)
    ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    keep = ts <= as_of
    if ttl:
        keep &= ts >= as_of - ttl
    frame = frame.loc[keep].assign(_ts=ts[keep]).sort_values("_ts")
    return frame.groupby(key).tail(1).set_index(key)


def test_simbank_membership_as_of_a_date_is_the_point_in_time_rows(served_world) -> None:  # type: ignore[no-untyped-def]
    settings = served_world.settings
    project = load_project()
    features = feature_project(project, settings)
    segments = project_segments(project, features)
    tables = {t.name: t.path for t in features.view_tables()}
    profile = pd.read_parquet(tables["customer_profile"], columns=["event_timestamp"])
    as_of = pd.Timestamp(pd.to_datetime(profile["event_timestamp"], utc=True).quantile(0.6)).floor("D")
    found = {m.segment: m for m in members_as_of(segments, features, ["affluent", "young_adults", "at_risk"], as_of)}
    ttl = features.store().get_feature_view("customer_profile").ttl
    rows = _latest(tables["customer_profile"], "customer_id", as_of, ttl)
    assert found["affluent"].as_of == as_of.to_pydatetime()
    assert found["affluent"].known == len(rows)
    assert set(found["affluent"].members) == set(rows.index[rows["segment_affluent"] == 1])
    assert set(found["young_adults"].members) == set(rows.index[rows["age"].between(18, 30)])
    activity = _latest(tables["customer_activity"], "customer_id", as_of, ttl)
    at_risk = (
        (activity["close_account_views_30d"] >= 1)
        | (activity["competitor_transfer_amount_30d"] > 0)
        | (activity["complaints_90d"] > 0)
    )
    assert set(found["at_risk"].members) == set(activity.index[at_risk])
    assert 0 < found["affluent"].size < found["affluent"].known


def test_segment_cli_lists_sizes_and_exports_members(served_world, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(served_world.settings.home))
    runner = CliRunner()
    listed = runner.invoke(app, ["segment", "list"], terminal_width=200)
    assert listed.exit_code == 0 and "travel_prospects" in listed.output and "has_travel_card" in listed.output
    day = "2026-02-15"  # the served world runs from 2026-01-01 for 100 days
    sized = runner.invoke(app, ["segment", "size", "affluent", "mass", "--as-of", day], terminal_width=200)
    assert sized.exit_code == 0, sized.output
    assert f"as of {day} 00:00 UTC" in " ".join(sized.output.split()) and "affluent" in sized.output
    out = tmp_path / "prospects.csv"
    exported = runner.invoke(app, ["segment", "export", "affluent", "--as-of", day, "--output", str(out)])
    assert exported.exit_code == 0, exported.output
    keys = pd.read_csv(out)["customer_id"]
    features = feature_project(load_project(), served_world.settings)
    (m,) = members_as_of(project_segments(load_project(), features), features, ["affluent"], parse_as_of(day))
    assert keys.tolist() == sorted(m.members.tolist()) and len(keys) == m.size > 0
    assert f"affluent: {m.size:,} of {m.known:,} entities" in " ".join(exported.output.split())
    default = runner.invoke(app, ["segment", "export", "mass", "--as-of", day])
    assert default.exit_code == 0 and (served_world.settings.home / "segments" / "mass_20260215.csv").is_file()
    bad = runner.invoke(app, ["segment", "size", "nope"])
    assert bad.exit_code == 2 and "unknown segment 'nope'; known: mass" in bad.output


def test_berka_segments_through_feast_match_its_feature_tables(berka) -> None:  # type: ignore[no-untyped-def]
    features = feature_project(berka.project, berka.settings)
    segments = project_segments(berka.project, features)
    as_of = parse_as_of("1997-01-01")
    found = {m.segment: m for m in members_as_of(segments, features, ["card_holders", "card_prospects"], as_of)}
    tables = {t.name: t.path for t in features.view_tables()}
    products = _latest(tables["account_products"], "account_id", pd.Timestamp(as_of), None)
    holders = set(products.index[products["cards_all"] > 0])
    assert set(found["card_holders"].members) == holders and len(holders) > 0
    profile = _latest(tables["account_profile"], "account_id", pd.Timestamp(as_of), None)
    loans = _latest(tables["account_loans"], "account_id", pd.Timestamp(as_of), None)
    frame = profile.join(products[["cards_all"]]).join(loans[["loans_all"]])
    prospects = (
        ~(frame["cards_all"] > 0)
        & ~(frame["loans_all"] > 0)
        & (frame["account_age_days"] >= 1095)
        & frame["owner_age"].between(25, 60)
    )
    assert set(found["card_prospects"].members) == set(frame.index[prospects])
    assert found["card_prospects"].size > 0


def test_berka_segment_cli_sizes_through_the_project_file(berka, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(berka.settings.home))
    features = feature_project(berka.project, berka.settings)
    (m,) = members_as_of(
        project_segments(berka.project, features), features, ["long_standing"], parse_as_of("1998-06-01")
    )
    args = ["segment", "size", "long_standing", "--as-of", "1998-06-01", "--project", str(BERKA)]
    out = CliRunner().invoke(app, args, terminal_width=200)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"long_standing │ {m.size:,}" in text and f"({m.known:,} entities known)" in text and m.size > 0
