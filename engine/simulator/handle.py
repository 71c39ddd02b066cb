"""Start the simulator in threads and steer it from Python: what tests, demos and the CLI use.

>>> handle = start_simulator(settings, webhook_url="http://127.0.0.1:8000/webhooks/sendgrid")
>>> SendGridAPIClient(settings.sendgrid.api_key, host=handle.url).send(mail)
>>> handle.flush()      # post every pending event now
>>> handle.stop()
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from werkzeug.serving import BaseWSGIServer, make_server

from engine.settings import Settings
from engine.simulator.delivery import WebhookDelivery
from engine.simulator.server import AcceptedRequest, MailSendService, SimulatorApp
from engine.simulator.truth import TrueRates, load_true_rates
from engine.simulator.wire import load_or_create_key_pair, public_key_base64


class SimulatorHandle:
    """A running simulator: HTTP server thread plus (optionally) the webhook delivery thread."""

    def __init__(
        self,
        server: BaseWSGIServer,
        service: MailSendService,
        *,
        public_key: str,
        auto_deliver: bool,
    ) -> None:
        self._server = server
        self._service = service
        self.public_key = public_key  # base64 DER SubjectPublicKeyInfo, to verify posts
        host = server.host if ":" not in server.host else f"[{server.host}]"
        self.url = f"http://{host}:{server.port}"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # so stop() returns promptly
                name="simulator-http",
                daemon=True,
            )
        ]
        if auto_deliver and service.delivery.webhook_url is not None:
            self._threads.append(
                threading.Thread(
                    target=service.run_delivery,
                    args=(self._stop,),
                    name="simulator-webhook",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    @property
    def webhook_url(self) -> str | None:
        return self._service.delivery.webhook_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Payloads of every Mail Send request received (JSON objects only), rejected included."""
        return self._service.received_payloads()

    @property
    def accepted(self) -> list[AcceptedRequest]:
        """The requests answered 202, with their X-Message-Id."""
        return self._service.accepted_requests()

    def inject_failure(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` Mail Send requests get ``status`` (429 carries X-RateLimit-Reset =
        now + ``retry_after``, default 1 s). Raises ``ValueError`` for a status not 429/5xx."""
        self._service.inject_failure(status, count, retry_after)

    def inject_slow(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` Mail Send requests are answered after ``seconds``."""
        self._service.inject_slow(seconds, count)

    def flush(self) -> int:
        """Post every pending event now (ignoring due times); returns the events delivered."""
        return self._service.flush()

    def deliver_due(self) -> int:
        """Post only the events due by the simulator's clock; returns the events delivered.

        Events of accepted requests are generated first (SendGrid works after the 202).
        """
        return self._service.deliver_due()

    def drain_events(self) -> list[dict[str, Any]]:
        """Remove and return every pending event, in due order (for runs without a webhook)."""
        return self._service.drain()

    def stats(self) -> dict[str, int]:
        """Requests, messages accepted, events generated, delivered, pending, dropped."""
        return self._service.stats()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from another thread or a signal handler)."""
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        """Stop serving and delivering; pending events are discarded. Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._service.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._service.planner.discard()

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_simulator(
    settings: Settings,
    *,
    webhook_url: str | None,
    seed: int | None = None,
    port: int = 0,
    time_scale: float | None = None,
    clock: Callable[[], float] = time.time,
    key_dir: Path | None = None,
    true_rates: TrueRates | None = None,
    auto_deliver: bool = True,
) -> SimulatorHandle:
    """Serve the simulator on ``settings.simulator.host``:``port`` (0 picks a free port).

    ``webhook_url=None`` posts nothing: events wait for :meth:`SimulatorHandle.drain_events`.
    ``seed`` and ``time_scale`` default to the settings; ``clock`` dates events and decides
    what is due; ``key_dir`` (default ``<base_dir>/instance``) holds the signing key pair;
    ``auto_deliver=False`` leaves posting to :meth:`SimulatorHandle.flush` and
    :meth:`SimulatorHandle.deliver_due`. Raises ``OSError`` when the port is taken,
    :class:`~engine.simulator.truth.TrueRatesError` for a bad true-rates file and
    ``ValueError`` for an unreadable key file.
    """
    config = settings.simulator
    truth = true_rates or load_true_rates(_true_rates_path(settings))
    # Events, delivery order, message ids: one stream each, so none depends on the others' timing.
    seeds = np.random.SeedSequence(config.seed if seed is None else seed).spawn(3)
    time_scale = config.time_scale if time_scale is None else time_scale
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    # Bind first, ourselves: a taken port must raise OSError (werkzeug's own bind would exit
    # the process) before anything is written to disk.
    with _listening_socket(config.host, port) as listening:
        private_key = load_or_create_key_pair(key_dir or settings.base_dir / "instance")
        delivery = WebhookDelivery(
            config,
            webhook_url=webhook_url,
            private_key=private_key,
            rng=np.random.default_rng(seeds[1]),
            clock=clock,
            bearer_token=settings.sendgrid.webhook_bearer_token,
        )
        service = MailSendService(
            api_key=settings.sendgrid.api_key,
            truth=truth,
            delivery=delivery,
            rng=np.random.default_rng(seeds[0]),
            message_id_rng=np.random.default_rng(seeds[2]),
            time_scale=time_scale,
            clock=clock,
        )
        # The server works on its own duplicate of the socket; ours is closed on leaving.
        server = make_server(
            config.host, port, SimulatorApp(service), threaded=True, fd=listening.fileno()
        )
    return SimulatorHandle(
        server, service, public_key=public_key_base64(private_key), auto_deliver=auto_deliver
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except BaseException:
        listening.close()
        raise
    return listening


def _true_rates_path(settings: Settings) -> Path | None:
    name = settings.simulator.true_rates_file
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() else settings.base_dir / path
