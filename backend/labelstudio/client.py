"""The Label Studio API client, built from Settings when a caller needs it (never at import time).

label-studio-sdk's `LabelStudio` accepts a legacy token or a personal access token and refreshes
the latter by itself; its objects are pydantic models, which `as_dict` turns back into the plain
dicts the rest of the code reads.
"""
from __future__ import annotations

from ..errors import ConfigurationError
from ..settings import Settings

API_TIMEOUT_S = 30.0


class LabelStudioNotConfigured(ConfigurationError):
    """LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are needed for this (reconcile, pre-annotate)."""


def label_studio_client(settings: Settings):
    if not settings.label_studio_api:
        raise LabelStudioNotConfigured("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to use the Label Studio API")
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key,
                       timeout=API_TIMEOUT_S)


def as_dict(obj) -> dict:
    """An SDK model (or a dict) as a plain dict."""
    if isinstance(obj, dict):
        return obj
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
