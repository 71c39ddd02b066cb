"""``resistry serve``'s gunicorn settings: the production default the landing benchmark uses."""

from __future__ import annotations

import gc

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
