"""Benchmarks: plain scripts printing measured figures (`uv run --frozen python -m benchmarks.<name>`).

Importing the package keeps third-party noise out of their output, as the CLI does without `--verbose`: the
libraries' deprecation warnings and MLflow's artefact-download progress bars (`NEXTBEST_BENCH_VERBOSE=1` keeps them).
"""

import os

if not os.environ.get("NEXTBEST_BENCH_VERBOSE"):
    from nextbest.console import quiet_third_parties

    quiet_third_parties()
