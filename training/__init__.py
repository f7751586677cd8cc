"""Training: point-in-time training sets, Optuna + XGBoost tuning, MLflow tracking, registry and promotion gate.

One module per stage (Made-With-ML style): `datasets` (Feast training sets and time splits), `tune` (the Optuna
study), `metrics`, `plots`, `policy_value` (NBA greedy-policy value from the logs), `tracking` (MLflow runs and
model logging), `registry` (aliases and the promotion gate), `pipeline` (`train_model`, the whole job) and
`synthetic` (frames with a known signal for tests and benchmarks). The evaluation ladder, off-policy estimators and
experiments live beside them (`evaluate`, `ladder`, `ope`, `experiments`). The model artefact and its calibrator
are on the floor (`nextbest.models`). Nothing is imported here so that `import training` stays cheap.
"""
