"""Does the promotion gate pick the model that earns more? The value gate against the pooled-AUC gate, scored by the
simulator's truth (docs/evaluation.md, "The promotion gate on policy value").

Needs a world with a churn champion (`make demo`, or NEXTBEST_HOME pointing at a large world). Fits NBA models in
memory on the same time split (`--trials` each): the full model, the full model without the relevance features,
and the stage-3 model (no real-time context). For each ordered pair (challenger, champion) it prints what each gate
decides on the test split's logged decisions -- the AUC gate (`training.registry` rule for entity models: AUC gain
>= 0.002, log-loss no worse) and the value gate (`compare_greedy_policies`: doubly robust, paired) -- and what the
truth says: the share of the oracle that each model's greedy policy earns on the ladder's held-out candidates
(`p_true`, the world's acceptance), and stage 5 (the decision policy) fed each model. A gate is right on a pair when
it promotes exactly when the challenger's greedy policy truly earns more.

    uv run --frozen python -m benchmarks.gate_value --trials 4 --decisions 10000
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import time

import numpy as np
import pandas as pd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per model")
    parser.add_argument("--decisions", type=int, default=10_000, help="held-out decision points for the truth")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from feature_repo.actions import RELEVANCE_FEATURES
    from nextbest.catalogue import load_catalogue
    from nextbest.models.artefact import load_model
    from nextbest.policy import DecisionPolicy, load_policy
    from nextbest.settings import load_settings
    from training import evaluate as ev
    from training import ladder
    from training.datasets import build_nba_training_set, time_split
    from training.metrics import binary_metrics
    from training.policy_value import compare_greedy_policies
    from training.registry import GateRule, _value_verdict, _verdict

    started = time.perf_counter()
    settings = load_settings()
    world = ev._load_truth(settings)
    catalogue = load_catalogue()
    policy = DecisionPolicy(catalogue, load_policy(settings.serving.policy_path))
    nba_set = build_nba_training_set(settings)
    splits = time_split(nba_set.frame)
    test = splits.test
    decisions = ev.sample_decisions(test, args.decisions, 0)
    cands, _ = ev.heldout_candidates(settings, decisions, splits.train, world, policy)
    churn = load_model("churn", "champion", settings)
    churn_risk = pd.Series(churn.predict_frame(decisions), index=decisions[ladder.DECISION_ID].to_numpy())
    oracle = ladder.oracle_policy().choose(cands)
    seed = settings.training.seed
    relevance = [c for c in RELEVANCE_FEATURES if c in nba_set.feature_names]
    models = {
        "full": ev.fit_nba_in_memory(settings, nba_set, args.trials, seed, name="nba_full"),
        "no relevance": ev.fit_nba_in_memory(
            settings, nba_set.without_features(relevance), args.trials, seed, name="nba_no_relevance"
        ),
        "stage 3 (no context)": ev.train_stage3_model(settings, nba_set, args.trials, seed),
    }

    def share(choices: pd.Series) -> float:
        table = ladder.ladder_table(cands, {"x": choices, "oracle": oracle}).set_index("stage")
        return float(table.loc["x", "share_of_oracle_value"])

    y = test["label"].to_numpy()
    per_model: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        p_cands = model.predict_frame(cands)
        metrics = binary_metrics(y, model.predict_frame(test))
        per_model[name] = {
            "roc_auc": float(metrics["roc_auc"]),
            "log_loss": float(metrics["log_loss"]),
            "greedy_share_of_oracle": share(ev._expected_value_policy(name, p_cands).choose(cands)),
            "stage5_share_of_oracle": share(ev.stage5_choices(cands, decisions, policy, p_cands, churn_risk)),
        }
        m = per_model[name]
        print(
            f"{name:>22}: pooled AUC {m['roc_auc']:.4f}, log-loss {m['log_loss']:.4f}; truth on {len(decisions):,} "
            f"decision points: greedy {m['greedy_share_of_oracle']:.1%}, stage 5 {m['stage5_share_of_oracle']:.1%} "
            "of the oracle"
        )
    rule = GateRule()
    pairs = []
    right = {"auc": 0, "value": 0}
    for challenger, champion in itertools.permutations(models, 2):
        c, k = per_model[challenger], per_model[champion]
        comparison = compare_greedy_policies(models[challenger], models[champion], test, catalogue)
        auc_promotes, _ = _verdict(c, k, rule)
        value_promotes, reason = _value_verdict(c, k, comparison, rule)
        truly_better = c["greedy_share_of_oracle"] > k["greedy_share_of_oracle"]
        right["auc"] += auc_promotes == truly_better
        right["value"] += value_promotes == truly_better
        pairs.append(
            {
                "challenger": challenger,
                "champion": champion,
                "auc_gate_promotes": auc_promotes,
                "value_gate_promotes": value_promotes,
                "truly_better": truly_better,
                "true_gain_points": 100 * (c["greedy_share_of_oracle"] - k["greedy_share_of_oracle"]),
                "value_gate_reason": reason,
                **{f"dr_{k2}": v for k2, v in comparison.to_dict().items()},
            }
        )
        print(
            f"{challenger} over {champion}: AUC gate {'promotes' if auc_promotes else 'refuses'}, value gate "
            f"{'promotes' if value_promotes else 'refuses'} (DR {comparison.difference_eur:+.2f} +- "
            f"{comparison.difference_se:.2f} EUR per decision, z {comparison.z:.1f}, IPS "
            f"{comparison.difference_ips_eur:+.2f} +- {comparison.difference_ips_se:.2f}); truth: greedy "
            f"{100 * (c['greedy_share_of_oracle'] - k['greedy_share_of_oracle']):+.1f} points of the oracle"
        )
    n = len(pairs)
    print(
        f"right on {right['value']}/{n} pairs (value gate) vs {right['auc']}/{n} (AUC gate); world seed {world.seed}, "
        f"{len(test):,} logged test decisions; {time.perf_counter() - started:.0f} s, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    out = settings.home / "bench" / "gate_value.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"world_seed": world.seed, "models": per_model, "pairs": pairs, "right": right, "trials": args.trials}
    out.write_text(json.dumps(record, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
