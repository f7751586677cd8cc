"""The model artefact on the floor: a registered version as both training and serving use it.

`artefact` (the calibrated booster, loading a registry version), `calibration` (the calibrator stored beside it),
`integrity` (the sha256 digest recorded at registration and checked at every load) and `registry` (the MLflow
tracking/registry URIs, a client, and the bounds on registry calls). Training writes these artefacts, serving and the
evaluation read them; neither room imports the other.
"""
