"""The batched decision path (`DecisionEngine.decide_batch`, what campaigns and the policy twin call) decides exactly
as `recommend` does, for every project: same actions, propensities, priorities, reasons, entity scores and logged
contacts, with caps holding inside one batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nextbest.decision_log import DecisionLog
from nextbest.project import Project
from nextbest.settings import Settings
from serving.engine import DecisionEngine, decision_context
from serving.schemas import RecommendRequest, RecommendResponse

RELAXED: dict[str, object] = {"reload_interval_s": 0, "feature_timeout_ms": 2000.0, "simulated_time": True}


def _engine(settings: Settings, project: Project | None, log: Path) -> DecisionEngine:
    serving = settings.serving.model_copy(update=RELAXED)
    eng = DecisionEngine(
        settings.model_copy(update={"serving": serving}),
        project=project,
        decision_log=DecisionLog(
            f"sqlite:///{log}", key_type=(project.served.key_type if project is not None else "int")
        ),
    )
    eng.load()
    return eng


def _comparable(r: RecommendResponse) -> dict[str, Any]:
    """A decision without its id (every engine mints its own)."""
    return r.model_dump(exclude={"decision_id"})


def _requests(
    keys: list[Any], channels: tuple[str, ...], repeats: int
) -> tuple[list[RecommendRequest], list[datetime]]:
    """Each key asked `repeats` times on different channels, a minute apart, in an interleaved order."""
    start = datetime(2026, 9, 1, 12, tzinfo=UTC)
    requests, times = [], []
    for r in range(repeats):
        for n, key in enumerate(keys):
            requests.append(RecommendRequest(customer_id=key, channel=channels[(n + r) % len(channels)]))
            times.append(start + timedelta(minutes=r))
    return requests, times


def _pair(settings: Settings, project: Project | None, tmp: Path) -> Iterator[tuple[DecisionEngine, DecisionEngine]]:
    single, batch = _engine(settings, project, tmp / "single.db"), _engine(settings, project, tmp / "batch.db")
    try:
        yield single, batch
    finally:
        single.close()
        batch.close()


def _assert_same_decisions(single: DecisionEngine, batch: DecisionEngine, keys: list[Any], repeats: int = 2) -> None:
    channels = tuple(single.catalogue.channels)
    requests, times = _requests(keys, channels, repeats)
    one_by_one = [single.recommend(req, now=now) for req, now in zip(requests, times, strict=True)]
    batched = batch.decide_batch(requests, now=times)
    assert len(batched) == len(requests)
    differing = [
        (req.customer_id, req.channel)
        for req, a, b in zip(requests, one_by_one, batched, strict=True)
        if _comparable(a) != _comparable(b)
    ]
    assert not differing, f"{len(differing)} of {len(requests)} decisions differ, e.g. {differing[:3]}"
    assert sum(bool(r.actions) for r in batched) > len(batched) // 4  # the comparison covers real offers
    single.decision_log.flush()
    batch.decision_log.flush()
    since = times[0] - timedelta(days=1)
    for key in keys:
        a, b = single.decision_log.contact_history(key, since), batch.decision_log.contact_history(key, since)
        assert [(c.ts, c.channel, c.action_id) for c in a] == [(c.ts, c.channel, c.action_id) for c in b]


def test_a_batch_decides_the_simulated_bank_exactly_as_one_request_at_a_time(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for single, batch in _pair(served_world.settings, None, tmp_path):
        _assert_same_decisions(single, batch, served_world.customer_ids[:60], repeats=3)


def _berka_keys() -> list[Any]:
    """Accounts with and without a loan (the default-risk rule reads the loan: a second entity's features)."""
    import pandas as pd
    from project_fixtures import BERKA_DIR

    loans = set(pd.read_csv(BERKA_DIR / "loan.csv", sep=";").account_id)
    accounts = pd.read_csv(BERKA_DIR / "account.csv", sep=";").account_id
    with_loan = [int(a) for a in accounts if a in loans][:20]
    return with_loan + [int(a) for a in accounts if a not in loans][:20]


def _flat_keys() -> list[Any]:
    import pandas as pd

    from nextbest.settings import REPO_ROOT

    contacts = pd.read_csv(REPO_ROOT / "configs/examples/flat_contacts.csv")
    return [str(c) for c in sorted(contacts.customer_id.astype(str).unique())[:40]]


def test_a_batch_decides_berka_and_string_keys_exactly_as_one_request_at_a_time(  # type: ignore[no-untyped-def]
    berka, flat_project, tmp_path: Path
) -> None:
    for case, keys in ((berka, _berka_keys()), (flat_project, _flat_keys())):
        folder = tmp_path / case.project.name
        folder.mkdir()
        for single, batch in _pair(case.settings, case.project, folder):
            _assert_same_decisions(single, batch, keys, repeats=2)


def test_the_rows_a_batch_brings_are_completed_with_the_request_time_context(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for single, batch in _pair(served_world.settings, None, tmp_path):
        keys = served_world.customer_ids[60:90]
        requests, times = _requests(keys, ("app", "web"), 1)
        context = set(single._context_names())
        assert context, "the simulated bank has request-time context features"
        rows = []
        for req, now in zip(requests, times, strict=True):
            read = single.read_features(req, decision_context(req), now)
            rows.append({k: v for k, v in read.items() if k not in context})  # the entity's features only
        given = batch.decide_batch(requests, features=rows, now=times)
        read = single.decide_batch(requests, now=times)
        assert [_comparable(r) for r in given] == [_comparable(r) for r in read]


def test_caps_hold_inside_one_batch(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from nextbest.policy import MARKETING_KINDS

    for single, batch in _pair(served_world.settings, None, tmp_path):
        caps = batch.policy.config.caps
        channel = (caps.channels or batch.catalogue.channels)[0]
        now = datetime(2026, 9, 2, 9, tzinfo=UTC)
        probe = [RecommendRequest(customer_id=k, channel=channel) for k in served_world.customer_ids[:80]]
        offered = [
            r.customer_id for r in single.decide_batch(probe, now=[now] * len(probe)) if _marketing(r, MARKETING_KINDS)
        ]
        assert offered, f"nobody gets a marketing offer on {channel}: the test cannot see a cap"
        requests = [RecommendRequest(customer_id=offered[0], channel=channel) for _ in range(12)]
        out = batch.decide_batch(requests, now=[now + timedelta(minutes=m) for m in range(12)])
        marketing = [r for r in out if _marketing(r, MARKETING_KINDS)]
        assert 1 <= len(marketing) <= caps.max_per_day_per_channel  # one customer, one channel, one day


def _marketing(r: RecommendResponse, kinds: Any) -> bool:
    return any(a.kind in kinds for a in r.actions)


def test_a_bad_request_in_a_batch_is_named(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for _single, batch in _pair(served_world.settings, None, tmp_path):
        ok = RecommendRequest(customer_id=served_world.customer_ids[0], channel="app")
        bad = RecommendRequest.model_construct(customer_id=served_world.customer_ids[1], channel="fax")
        with pytest.raises(ValueError, match=r"request 1: channel: unknown channel 'fax'"):
            batch.decide_batch([ok, bad])


def _without_reasons(r: RecommendResponse) -> dict[str, Any]:
    out = _comparable(r)
    for a in out["actions"]:
        a.pop("reason_codes")
    return out


def test_a_dry_run_decides_the_same_and_writes_nothing(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for single, batch in _pair(served_world.settings, None, tmp_path):
        requests, times = _requests(served_world.customer_ids[100:130], ("app", "email"), 1)
        proposed = batch.decide_batch(requests, now=times, dry_run=True)
        assert batch.decision_log.flush()
        assert batch.decision_log.count("decisions") == 0 and batch.decision_log.count("decision_contacts") == 0
        real = single.decide_batch(requests, now=times)
        # The same decisions; a dry run (a campaign's proposal) skips the model contributions' reason codes.
        assert [_without_reasons(r) for r in proposed] == [_without_reasons(r) for r in real]
        assert any(r.actions for r in proposed)


#: what a logged record holds that differs between two engines deciding the same thing
_UNCOMPARABLE = {"decision_id", "decided_at", "latency_ms", "request_id"}


def test_a_campaign_sized_batch_logs_what_one_request_at_a_time_logs(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The campaign's path (a few hundred customers in one `decide_batch`, the rows brought, the campaign's
    actions, one best action each) decides and logs exactly what the service's path does one request at a time:
    actions, channels, propensities, priorities, reasons, and the logged records (features with their request
    context, scores, rejections, choice probabilities)."""
    for single, batch in _pair(served_world.settings, None, tmp_path):
        keys = served_world.customer_ids[:300]
        actions = [a.id for a in batch.catalogue.actions if a.kind != "service"]
        now = datetime(2026, 9, 1, 9, tzinfo=UTC)
        requests = [
            RecommendRequest(customer_id=k, channel=("email", "app", "sms")[n % 3], max_actions=1, actions=actions)
            for n, k in enumerate(keys)
        ]
        context = set(single._context_names())
        rows = [
            {k: v for k, v in single.read_features(r, decision_context(r), now).items() if k not in context}
            for r in requests
        ]
        one_by_one = [single.recommend(r, now=now) for r in requests]
        batched = batch.decide_batch(requests, features=rows, now=[now] * len(requests), campaign_id="parity")
        assert [_comparable(r) for r in batched] == [_comparable(r) for r in one_by_one]
        assert sum(bool(r.actions) for r in batched) > len(keys) // 4
        assert any(a.reason_codes for r in batched for a in r.actions)
        single.decision_log.flush()
        batch.decision_log.flush()
        for a, b in zip(one_by_one, batched, strict=True):
            logged = single.decision_log.get_decision(a.decision_id)
            bulk = batch.decision_log.get_decision(b.decision_id)
            assert logged is not None and bulk is not None
            assert bulk.pop("campaign_id") == "parity" and logged.pop("campaign_id") is None
            assert bulk.pop("campaign_control") is False and logged.pop("campaign_control") is None
            for record in (logged, bulk):
                record["contacts"] = [
                    {k: v for k, v in c.items() if k not in ("id", "decision_id", "recorded_at")}
                    for c in record["contacts"]
                ]
            same = {k: v for k, v in logged.items() if k not in _UNCOMPARABLE}
            assert {k: v for k, v in bulk.items() if k not in _UNCOMPARABLE} == same


def test_a_shared_view_is_rebuilt_when_a_context_name_it_read_differs() -> None:
    """Two requests copying one brought row share the first's view only when the context names the view read agree;
    names outside the context are not compared again (they are the source's), names inside are."""
    from types import SimpleNamespace

    from nextbest.policy import CustomerView
    from serving.engine import _SharedViews

    class ReadsChannel:  # a view that reads a context feature (as a segment on the request's channel would)
        calls = 0

        def view(self, customer_id: int, features: Any) -> CustomerView:
            ReadsChannel.calls += 1
            return CustomerView(customer_id=customer_id, known=True, age=features.get("age"),
                                segment=str(features.get("channel_email")))  # fmt: skip

    source = {"age": 40}
    context = frozenset({"channel_email", "channel_sms"})

    def item(channel: str) -> Any:
        row = {**source, "channel_email": int(channel == "email"), "channel_sms": int(channel == "sms")}
        return SimpleNamespace(req=SimpleNamespace(customer_id=7), got=SimpleNamespace(features=row),
                               source=source, context=context)  # fmt: skip

    items = [item("email"), item("sms"), item("email")]
    views = _SharedViews(items)  # type: ignore[arg-type]
    policy = ReadsChannel()
    got = [views.view(policy, it) for it in items]  # type: ignore[arg-type]
    assert [v.segment for v in got] == ["1", "0", "1"]  # the sms request's view was built anew
    assert all(v.features is it.got.features for v, it in zip(got, items, strict=True))
    assert ReadsChannel.calls == 3  # the third differs from the last built (the sms one) and is rebuilt

    class ReadsAge(ReadsChannel):
        def view(self, customer_id: int, features: Any) -> CustomerView:
            ReadsChannel.calls += 1
            return CustomerView(customer_id=customer_id, known=True, age=features.get("age"))

    ReadsChannel.calls = 0
    views = _SharedViews(items)  # type: ignore[arg-type]
    shared = [views.view(ReadsAge(), it) for it in items]  # type: ignore[arg-type]
    assert ReadsChannel.calls == 1 and [v.age for v in shared] == [40, 40, 40]
