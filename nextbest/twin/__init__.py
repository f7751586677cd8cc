"""The policy twin: run decision policies over the same simulated customers for N days, the world reacting to each.

Modules: `run` (warm world per seed, forked per policy, lived day by day), `agent` (a policy as the world's
`ContactPolicy`: one engine batch per day), `engine` (the service's decision engine with the twin's rows, scorers and
log), `scorers` (what fills the engine's model slots for each ladder stage and the oracle), `policies` (the stages,
the serving policy, a candidate), `scorecard` (per-customer ledgers, KPIs with paired errors, what-if margins),
`report` (JSON, plots, MLflow), `job` (the whole `nextbest twin`). See docs/twin.md.
"""
