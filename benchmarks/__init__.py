"""Benchmarks: plain scripts printing measured figures (`uv run --frozen python -m benchmarks.<name>`)."""
