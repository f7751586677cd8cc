"""The model artefact on the floor: a registered version as both training and serving use it.

`artefact` (the calibrated booster, loading a registry version), `calibration` (the calibrator stored beside it)
and `registry` (the MLflow tracking/registry URIs and client). Training writes these artefacts, serving and the
evaluation read them; neither room imports the other.
"""
