"""Experiment assignment (nextbest/assignment.py): holdout, campaign controls and traffic splits by a keyed hash."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nextbest.assignment import Assigner, AssignmentConfig, HoldoutSpec, SplitSpec, unit
from nextbest.errors import ConfigError
from nextbest.project import load_project
from nextbest.settings import REPO_ROOT

N = 100_000
INT_KEYS = np.arange(1, N + 1, dtype="int64")
STR_KEYS = np.array([f"C-{i:06d}" for i in range(N)], dtype=object)


def _config(holdout: float = 0.05, control: float = 0.1) -> AssignmentConfig:
    return AssignmentConfig.model_validate(
        {
            "holdout": {"share": holdout},
            "campaign_control_share": control,
            "splits": [
                {
                    "name": "nba_model",
                    "arms": [{"name": "champion", "share": 0.9}, {"name": "challenger", "share": 0.1}],
                },
                {
                    "name": "policy",
                    "arms": [
                        {"name": "a", "share": 0.5},
                        {"name": "b", "share": 0.3},
                        {"name": "c", "share": 0.2, "policy": "candidate.yaml"},
                    ],
                },
            ],
        }
    )


def _within_binomial(count: int, n: int, p: float, sds: float = 4.5) -> bool:
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("keys", [INT_KEYS, STR_KEYS], ids=["int", "str"])
def test_holdout_control_and_split_shares_are_within_binomial_tolerance(keys: np.ndarray) -> None:
    a = Assigner("simbank", _config())
    assert _within_binomial(int(a.in_holdout(keys).sum()), N, 0.05)
    assert _within_binomial(int(a.in_control("spring_mailing", keys).sum()), N, 0.10)
    arms = a.arm("nba_model", keys)
    assert set(arms) == {"champion", "challenger"}
    assert _within_binomial(int((arms == "challenger").sum()), N, 0.10)
    policy = a.arm("policy", keys)
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert _within_binomial(int((policy == name).sum()), N, share)


def test_draws_are_uniform() -> None:
    u = unit("nextbest/test", INT_KEYS)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("keys", [INT_KEYS[:2000], STR_KEYS[:2000]], ids=["int", "str"])
def test_one_key_and_an_array_of_keys_give_the_same_assignment(keys: np.ndarray) -> None:
    a = Assigner("berka", _config())
    holdout, control, arms = a.in_holdout(keys), a.in_control("c1", keys), a.arm("policy", keys)
    for i, key in enumerate(keys.tolist()):
        assert a.in_holdout(key) is bool(holdout[i])
        assert a.in_control("c1", key) is bool(control[i])
        assert a.arm("policy", key) == arms[i]
    frame = a.assign_frame(list(keys))
    assert frame["holdout"].tolist() == holdout.tolist()
    assert frame["arm_policy"].tolist() == arms.tolist()
    one = a.assign(keys.tolist()[7])
    assert one.holdout == bool(holdout[7]) and one.arms["policy"] == arms[7]
    assert one.log_fields("policy") == {"holdout": one.holdout, "split": "policy", "arm": arms[7]}


def test_assignment_is_stable_across_instances_and_fixed_by_the_hash() -> None:
    first = Assigner("simbank", _config()).in_holdout(INT_KEYS[:5000])
    again = Assigner("simbank", _config()).in_holdout(list(INT_KEYS[:5000].tolist()))
    assert (first == again).all()
    # A persistent holdout: these draws are a pure function of the project, the salt and the key, forever.
    assert unit("nextbest/simbank/holdout/", 42) == pytest.approx(unit("nextbest/simbank/holdout/", "42"))
    assert unit("nextbest/simbank/holdout/", 42) == unit("nextbest/simbank/holdout/", [42])[0]


def test_known_hash_values_do_not_change() -> None:
    """Regression values of the hash (BLAKE2b keyed by the salt, top 53 bits): a change would reshuffle every holdout
    and every split already running."""
    assert [round(unit("fixed", k), 9) for k in (1, 2, "C-0001")] == [0.958717226, 0.88147192, 0.505032043]


def test_int_and_string_forms_of_a_key_agree_like_the_decision_log_stores_them() -> None:
    a = Assigner("simbank", _config())
    keys = INT_KEYS[:3000]
    assert (a.in_holdout(keys) == a.in_holdout([str(k) for k in keys.tolist()])).all()
    assert (a.in_holdout(keys) == a.in_holdout(keys.astype("float64"))).all()  # a key read through a float column


def test_holdout_split_and_campaign_control_are_independent() -> None:
    a = Assigner("simbank", _config(holdout=0.2, control=0.3))
    holdout = a.in_holdout(INT_KEYS)
    challenger = a.arm("nba_model", INT_KEYS) == "challenger"
    control = a.in_control("winter", INT_KEYS)
    other = a.in_control("summer", INT_KEYS)
    for x, y in ((holdout, challenger), (holdout, control), (challenger, control), (control, other)):
        table = np.array([[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]])
        assert stats.chi2_contingency(table).pvalue > 1e-3
    # Projects draw independently too: the same key is not held out in every bank.
    berka = Assigner("berka", _config(holdout=0.2)).in_holdout(INT_KEYS)
    assert 0.02 < np.mean(holdout & berka) < 0.06


def test_raising_the_holdout_share_keeps_everyone_who_was_in() -> None:
    small = Assigner("simbank", _config(holdout=0.05)).in_holdout(INT_KEYS)
    large = Assigner("simbank", _config(holdout=0.08)).in_holdout(INT_KEYS)
    assert not (small & ~large).any() and large.sum() > small.sum()
    resalted = Assigner("simbank", AssignmentConfig(holdout=HoldoutSpec(share=0.05, salt="2027"))).in_holdout(INT_KEYS)
    assert 0.001 < np.mean(small & resalted) < 0.005  # a new salt draws a new holdout


def test_no_holdout_configured_holds_out_nobody_and_bad_keys_are_refused() -> None:
    a = Assigner("simbank")
    assert a.in_holdout(7) is False and not a.in_holdout(INT_KEYS[:10]).any()
    assert a.in_control("c", 7) is False
    with pytest.raises(TypeError):
        Assigner("simbank", _config()).in_holdout(True)
    with pytest.raises(TypeError):
        Assigner("simbank", _config()).arm("policy", 1.5)
    with pytest.raises(ConfigError, match="unknown split 'nope'"):
        Assigner("simbank", _config()).arm("nope", 1)
    with pytest.raises(ConfigError, match="control share"):
        Assigner("simbank", _config()).in_control("c", 1, share=1.5)


def test_split_shares_must_sum_to_one_and_names_be_unique() -> None:
    with pytest.raises(ValueError, match="sum to 0.9"):
        SplitSpec.model_validate({"name": "s", "arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]})
    with pytest.raises(ValueError, match="used twice"):
        SplitSpec.model_validate({"name": "s", "arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]})


def test_a_project_declares_its_assignment_under_serving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = (REPO_ROOT / "configs/examples/flat_contacts.yaml").read_text()
    text = text.replace(
        "serving:\n  entity: customer\n",
        "serving:\n  entity: customer\n  assignment:\n    holdout: {share: 0.05}\n"
        "    splits: [{name: live, arms: [{name: champion, share: 0.9}, {name: challenger, share: 0.1}]}]\n",
    )
    path = tmp_path / "flat.yaml"
    path.write_text(text.replace("data_dir: .", f"data_dir: {REPO_ROOT / 'configs/examples'}"))
    project = load_project(path)
    assert project.serving is not None
    config = project.serving.assignment
    assert config.holdout.share == 0.05 and config.split("live").arms[1].name == "challenger"
    a = Assigner(project.name, config)
    assert _within_binomial(int(a.in_holdout(STR_KEYS).sum()), N, 0.05)
    assert load_project().serving.assignment == AssignmentConfig()  # the simulated bank ships none (yet)
