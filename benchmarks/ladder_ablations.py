"""What moves the evaluation ladder: IPS weighting of the NBA model and the decision policy's parts, measured on the
held-out candidates of the current world (docs/evaluation.md, "Why stage 5 does not clearly beat ...").

Needs a demo world with a churn champion (`make demo`, or NEXTBEST_HOME pointing at one). For each IPS clip it
trains the full NBA model and the no-context stage-3 model in memory (same recipe, `--trials` each) and prints each
policy's share of the oracle: stage 3, stage 5 (model + decision policy), stage 5 without the feature-rule service
triggers (event triggers kept), and the policy fed the true propensities; with the models' per-action
over-prediction (mean predicted / mean true p, median over actions) and within-action Spearman vs the truth.
`--ablate A+B` adds, per clip, the full model trained without features A and B (repeatable: one variant each),
on the same split, trials and seed.

    uv run --frozen python -m benchmarks.ladder_ablations --clips 1,5 --trials 4
    uv run --frozen python -m benchmarks.ladder_ablations --clips 1 \
        --ablate relevance_signal_strength+relevance_page_views_30d --ablate relevance_signal_strength
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import pandas as pd


def _within_action_spearman(p: np.ndarray, cands: pd.DataFrame) -> float:
    from scipy.stats import spearmanr

    values = []
    for _, g in cands.assign(_p=p).groupby("action_id"):
        if len(g) > 30 and g["p_true"].std() > 0 and g["_p"].std() > 0:
            values.append(spearmanr(g["_p"], g["p_true"]).statistic)
    return float(np.mean(values)) if values else float("nan")


def _over_prediction(p: np.ndarray, cands: pd.DataFrame) -> float:
    means = pd.DataFrame({"a": cands["action_id"], "p": p, "t": cands["p_true"]}).groupby("a")[["p", "t"]].mean()
    means = means[means["t"] > 0]
    return float(np.median(means["p"] / means["t"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", default="1,5", help="IPS clips to compare (1 = unweighted)")
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per model")
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--ablate", action="append", default=[], help="features left out of a variant, A+B+...")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from nextbest.catalogue import load_catalogue
    from nextbest.models.artefact import load_model
    from nextbest.policy import DecisionPolicy, load_policy
    from nextbest.settings import load_settings
    from training import evaluate as ev
    from training import ladder
    from training.datasets import build_nba_training_set, time_split

    settings = load_settings()
    world = ev._load_truth(settings)
    catalogue = load_catalogue()
    policy = DecisionPolicy(catalogue, load_policy(settings.serving.policy_path))
    values = {a.id: float(a.value) for a in catalogue.actions}
    nba_set = build_nba_training_set(settings)
    ablations = [tuple(a.split("+")) for a in args.ablate]
    for names in ablations:
        unknown = [n for n in names if n not in nba_set.feature_names]
        if unknown:
            parser.error(f"--ablate: not features of the NBA set: {', '.join(unknown)}")
    splits = time_split(nba_set.frame)
    decisions = ev.sample_decisions(splits.test, args.decisions, 0)
    cands, train_contacts = ev.heldout_candidates(settings, decisions, splits.train, world, policy)
    churn = load_model("churn", "champion", settings)
    churn_risk = pd.Series(churn.predict_frame(decisions), index=decisions[ladder.DECISION_ID].to_numpy())
    no_rules = DecisionPolicy(
        catalogue,
        policy.config.model_copy(
            update={
                "service_triggers": tuple(t.model_copy(update={"rules": ()}) for t in policy.config.service_triggers)
            }
        ),
    )
    oracle = ladder.oracle_policy().choose(cands)
    fixed = {
        "1 one offer for all": ladder.fit_one_offer(train_contacts, values).choose(cands),
        "2 segment rules": ladder.fit_segment_rules(train_contacts, values).choose(cands),
        "5 policy, true p": ev.stage5_choices(cands, decisions, policy, cands["p_true"].to_numpy(), churn_risk),
    }

    def shares(choices: dict[str, pd.Series]) -> dict[str, float]:
        table = ladder.ladder_table(cands, {**choices, "oracle": oracle}).set_index("stage")
        return {k: round(float(table.loc[k, "share_of_oracle_value"]), 4) for k in choices}

    results: dict[str, object] = {"world_seed": world.seed, "decisions": len(decisions), **shares(fixed)}
    print(
        f"world seed {world.seed}, {len(decisions)} decisions: "
        + ", ".join(f"{k} {v:.1%}" for k, v in shares(fixed).items())
    )
    for clip in (float(c) for c in args.clips.split(",")):
        started = time.perf_counter()
        tuned = settings.model_copy(update={"training": settings.training.model_copy(update={"nba_ips_clip": clip})})
        full = ev.fit_nba_in_memory(tuned, nba_set, args.trials, settings.training.seed, name="nba_full")
        batch = ev.train_stage3_model(tuned, nba_set, args.trials, settings.training.seed)
        p5, p3 = full.predict_frame(cands), batch.predict_frame(cands)
        row = shares(
            {
                "3 batch, no context": ev._expected_value_policy("3", p3).choose(cands),
                "5 model + policy": ev.stage5_choices(cands, decisions, policy, p5, churn_risk),
                "5 model + policy, no feature-rule triggers": ev.stage5_choices(
                    cands, decisions, no_rules, p5, churn_risk
                ),
            }
        )
        row.update(
            over_prediction_median=round(_over_prediction(p5, cands), 3),
            spearman_within_action=round(_within_action_spearman(p5, cands), 3),
        )
        for names in ablations:
            reduced = nba_set.without_features(list(names))
            model = ev.fit_nba_in_memory(tuned, reduced, args.trials, settings.training.seed, name="nba_ablated")
            p = model.predict_frame(cands)
            label = "without " + "+".join(names)
            row.update(
                shares({f"5 model + policy, {label}": ev.stage5_choices(cands, decisions, policy, p, churn_risk)})
            )
            row[f"spearman_within_action, {label}"] = round(_within_action_spearman(p, cands), 3)
        row["seconds"] = round(time.perf_counter() - started, 1)
        results[f"clip_{clip:g}"] = row
        print(
            f"IPS clip {clip:g}: " + ", ".join(f"{k} {v:.1%}" if k[0].isdigit() else f"{k} {v}" for k, v in row.items())
        )
    out = settings.home / "bench" / "ladder_ablations.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
