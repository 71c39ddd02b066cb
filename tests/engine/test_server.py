"""``resistry serve``'s gunicorn settings: the production default the landing benchmark uses."""

from __future__ import annotations

import gc
from datetime import timedelta
from types import SimpleNamespace

import pytest
from flask import Flask

from engine.server import _Gunicorn, gunicorn_options
from tests.conftest import make_settings

SQLITE = make_settings("sqlite:///instance/example.sqlite3")
POSTGRES = make_settings("postgresql+psycopg://resistry@db-host/resistry")


def test_keep_alive_workers_one_thread_each_on_sqlite_four_on_postgresql() -> None:
    options = gunicorn_options(SQLITE, host="0.0.0.0", port=8123, workers=3)
    assert options["bind"] == "0.0.0.0:8123" and options["workers"] == 3
    assert options["worker_class"] == "gthread" and options["threads"] == 1
    assert options["reuse_port"] is True
    assert "%(U)s" in options["access_log_format"] and "%(q)s" not in options["access_log_format"]
    assert gunicorn_options(POSTGRES)["threads"] == 4


def test_the_options_reach_gunicorn_and_gunicorn_cmd_args_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    server = _Gunicorn(SQLITE, gunicorn_options(SQLITE, port=8124), None)
    assert (server.cfg.worker_class_str, server.cfg.threads) == ("gthread", 1)
    assert server.cfg.reuse_port and server.cfg.bind == ["127.0.0.1:8124"]
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--threads 8 --keep-alive 7")
    server = _Gunicorn(SQLITE, gunicorn_options(SQLITE, port=8124), None)
    assert (server.cfg.threads, server.cfg.keepalive) == (8, 7)
    assert server.cfg.workers == 2  # what the environment does not name stays


def test_a_worker_freezes_what_start_up_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    gc.unfreeze()
    built = Flask("probe")
    server = _Gunicorn(SQLITE, gunicorn_options(SQLITE, port=8125), lambda: built)
    try:
        assert server.load() is built
        assert gc.get_freeze_count() > 1000  # the app and every module loaded so far
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/unsubscribe/NDI.c2lnbmF0dXJl", "/unsubscribe/…"),
        ("/recruiter/MQ.aBcDeF.c2lnbmF0dXJl", "/recruiter/…"),
        ("/admin/experiments", "/admin/experiments"),
    ],
)
def test_the_access_log_masks_credentials_in_paths(
    monkeypatch: pytest.MonkeyPatch, path: str, logged: str
) -> None:
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    cfg = _Gunicorn(SQLITE, gunicorn_options(SQLITE), None).cfg
    logger = cfg.logger_class(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "RAW_URI": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
    }
    request = SimpleNamespace(headers=[], method="GET", path=path, query="", version=(1, 1))
    response = SimpleNamespace(status="200 OK", response_length=10, sent=10, headers=[])
    line = cfg.access_log_format % logger.atoms(response, request, environ, timedelta(0))
    assert line == f'203.0.113.9 "GET {logged}" 200 10 0ms'
