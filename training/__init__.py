"""Training: point-in-time training sets, Optuna + XGBoost tuning, MLflow tracking, registry and promotion gate.

One module per stage (Made-With-ML style): `datasets` (Feast training sets and time splits), `tune` (the Optuna
study), `calibration`, `metrics`, `plots`, `tracking` (MLflow runs), `model` (the loaded model serving and
evaluation use), `registry` (aliases and the promotion gate), `pipeline` (`train_model`, the whole job).
Nothing is imported here so that `import training` stays cheap; import the stage module you need.
"""
