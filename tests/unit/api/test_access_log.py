"""gunicorn's logger takes the webhook secret out of the access and error logs (the real gunicorn
is in tests/integration/test_access_log.py)."""
import datetime
import logging

from gunicorn.config import Config

from backend.api.access_log import RedactingLogger, RedactSecrets

SECRET = "Tq3v_9xZ-Lr2Wm8kPb4N"


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


class Response:  # what gunicorn's access() reads of a response
    status, headers, sent = "200 OK", [("Content-Type", "application/json")], 2


class Request:  # ... and of a request
    headers = [("USER-AGENT", "python-requests/2.34.2")]


def _logger(monkeypatch, secret: str) -> tuple[RedactingLogger, Collect]:
    monkeypatch.setenv("WEBHOOK_SECRET", f"/{secret}/" if secret else "")
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingLogger(cfg)
    collect = Collect()
    for log in (logger.access_log, logger.error_log):  # process-wide loggers: one collector at a time
        for old in [h for h in log.handlers if isinstance(h, Collect)]:
            log.removeHandler(old)
        log.addHandler(collect)
    return logger, collect


def _access(logger: RedactingLogger) -> None:
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": f"/{SECRET}/webhook?x=1", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/webhook", "REMOTE_ADDR": "127.0.0.1", "HTTP_REFERER": f"http://ls:8080/{SECRET}/x"}
    logger.access(Response(), Request(), environ, datetime.timedelta(seconds=0.01))


def test_the_access_and_error_logs_show_the_secret_as_stars(monkeypatch):
    logger, collect = _logger(monkeypatch, SECRET)
    _access(logger)
    logger.error_log.setLevel(logging.DEBUG)
    logger.debug("%s %s", "POST", f"/{SECRET}/webhook")
    try:
        raise ValueError(f"could not route /{SECRET}/webhook")
    except ValueError:
        logger.exception("Error handling request %s", f"/{SECRET}/webhook")
    text = "\n".join(collect.lines)
    assert '"POST /***/webhook?x=1 HTTP/1.1" 200' in text and "http://ls:8080/***/x" in text
    assert "POST /***/webhook" in collect.lines[1]
    assert "Error handling request /***/webhook" in text and "could not route /***/webhook" in text
    assert SECRET not in text


def test_a_reload_replaces_the_filter_and_no_secret_means_no_filter(monkeypatch):
    logger, _ = _logger(monkeypatch, SECRET)
    logger.setup(logger.cfg)
    for log in (logger.access_log, logger.error_log):
        assert [type(f) for f in log.filters].count(RedactSecrets) == 1
    logger, collect = _logger(monkeypatch, "")
    assert not any(isinstance(f, RedactSecrets) for f in logger.access_log.filters + logger.error_log.filters)
    _access(logger)
    assert f"/{SECRET}/webhook" in collect.lines[0]  # nothing to redact: the line is left as it was


def test_records_without_the_secret_are_left_untouched():
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "Booting worker %s", (42,), None)
    assert RedactSecrets([SECRET]).filter(record)
    assert (record.msg, record.args) == ("Booting worker %s", (42,))
