"""create_app: Settings → services in app.extensions → blueprints → error handlers.

Nothing happens at import time; tests build as many apps as they like. The engine is loaded in a
background thread (started here unless `start_engine=False`) so /health and /setup answer at once.
"""
from __future__ import annotations

import logging
from typing import Callable

from flask import Flask

from .api import auth, handlers, metrics, ml, webhook
from .engines.base import LabelEngine
from .engines.factory import EngineLoader, engine_id, load_engine
from .labeling.service import LabelingService
from .refinement.versions import DefaultVersions
from .settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    engine_factory: Callable[[], LabelEngine] | None = None,
    start_engine: bool = True,
) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

    loader = EngineLoader(engine_factory or (lambda: load_engine(settings)))
    service_holder: dict[str, LabelingService] = {}

    def labeling() -> LabelingService:
        """The LabelingService over the loaded engine (waits for the engine, 503 on timeout)."""
        engine = loader.get(settings.llm_load_timeout_s)
        if "service" not in service_holder:
            service_holder["service"] = LabelingService(engine, calibration=settings.calibration)
        return service_holder["service"]

    app.extensions.update(
        {
            "llmlb.settings": settings,
            "llmlb.engine_loader": loader,
            "llmlb.engine_id": engine_id(settings),
            "llmlb.labeling": labeling,
            "llmlb.versions": DefaultVersions(engine_id(settings)),
            "llmlb.metrics": metrics.Metrics(),
        }
    )
    metrics.init_app(app, app.extensions["llmlb.metrics"])
    auth.init_app(app)
    app.register_blueprint(ml.bp)
    app.register_blueprint(webhook.bp)
    handlers.register_error_handlers(app)
    if start_engine:
        loader.start()
    return app
