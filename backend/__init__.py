"""LLM labeling backend for Label Studio (a regular package, so that an installed copy never merges with
another checkout of it: see pyproject.toml)."""
