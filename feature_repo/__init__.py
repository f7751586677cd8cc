"""The Nextbest feature repository: the customer genome, defined once for training and serving.

`specs` names every feature view, field and feature service; `pipeline` turns the bank's source tables into
point-in-time feature tables; `context` is the request-time math of the on-demand view; `definitions` builds the
Feast objects from those; `repo.py` is the file the `feast` CLI reads (see `.feastignore`); `actions` holds the
action attributes the NBA model scores against.
"""
