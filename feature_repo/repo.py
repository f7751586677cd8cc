"""The file the `feast` CLI reads (`feast apply`, `feast ui`, ... from this folder): the genome's Feast objects.

Feast discovers objects as module attributes, so this module builds them at import, which is the Feast
convention and the one exception to "no work at import time" (it only builds Python objects; nothing is read or
written). The offline tables follow the Nextbest settings (`NEXTBEST_HOME`, default `../.nextbest`), matching the
registry and online store paths of `feature_store.yaml` for the default home. Everything else in this folder is
listed in `.feastignore`; `nextbest features apply` applies the same objects through the SDK.
"""

from __future__ import annotations

from feature_repo.definitions import build_definitions
from nextbest.settings import load_settings

_definitions = build_definitions(load_settings().features_dir / "offline")

customer = _definitions.entity
customer_profile = _definitions.views["customer_profile"]
customer_activity = _definitions.views["customer_activity"]
contact_history = _definitions.views["contact_history"]
realtime_state = _definitions.views["realtime_state"]
realtime_events = _definitions.push_source
request_context = _definitions.context_view
churn_v1 = _definitions.services["churn_v1"]
nba_v1 = _definitions.services["nba_v1"]
