"""``resistry simulator``: settings, clear failures, and a real run in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook

from engine.cli import main
from engine.settings import SettingsError, load_settings
from engine.simulator import wire
from tests.engine.simulator.support import WebhookReceiver, mail


@pytest.fixture
def config(tmp_path: Path, project_root: Path) -> Path:
    """A copy of the project's settings whose instance/ directory is the test's own."""
    path = tmp_path / "config.toml"
    path.write_text((project_root / "config.toml").read_text())
    return path


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "simulator", *args],
        env={"RESISTRY_SECRET_KEY": "resistry-test-secret-key-0123456789abcdef"},
    )
    return result.exit_code, result.output


def test_the_simulator_section_is_validated(config: Path) -> None:
    config.write_text(
        config.read_text().replace('host = "127.0.0.1"\n# Port', 'host = "0.0.0.0"\n# Port')
    )

    with pytest.raises(SettingsError, match=r"simulator\.host must be a loopback address"):
        load_settings(config, environ={})


def test_defaults_point_the_app_at_the_simulator(config: Path) -> None:
    settings = load_settings(config, environ={})

    assert settings.sendgrid.host == f"http://127.0.0.1:{settings.simulator.port}"
    assert settings.simulator.webhook_url.endswith("/webhooks/sendgrid")


def test_a_taken_port_is_a_one_line_error(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, output = run(config, "--port", str(taken.getsockname()[1]))

    assert code != 0
    assert output.count("\n") == 1 and "cannot serve on 127.0.0.1:" in output
    assert not (config.parent / "instance" / wire.PRIVATE_KEY_FILE).exists()


def test_a_bad_true_rates_file_is_a_one_line_error_naming_it(config: Path) -> None:
    bad = config.parent / "bad.toml"
    bad.write_text("[defaults]\nclick = 7\n")
    config.write_text(
        config.read_text().replace('true_rates_file = ""', f'true_rates_file = "{bad}"')
    )

    code, output = run(config, "--port", "0")

    assert code != 0 and str(bad) in output and "defaults.click" in output


def test_keys_only_writes_the_key_pair_once_for_the_app_and_exits(config: Path) -> None:
    code, output = run(config, "--keys-only")
    public_key = (config.parent / "instance" / wire.PUBLIC_KEY_FILE).read_text()

    assert code == 0 and "webhook public key:" in output
    assert run(config, "--keys-only")[0] == 0
    assert (config.parent / "instance" / wire.PUBLIC_KEY_FILE).read_text() == public_key


def test_a_webhook_url_that_is_not_http_is_a_usage_error(config: Path) -> None:
    code, output = run(config, "--webhook-url", "ftp://example.org/")

    assert code == 2 and "--webhook-url must be an http(s) URL" in output


def test_a_real_run_accepts_mail_posts_signed_events_and_stops_on_sigterm(
    config: Path, project_root: Path, receiver: WebhookReceiver
) -> None:
    environment = os.environ | {
        "RESISTRY_SECRET_KEY": "resistry-test-secret-key-0123456789abcdef",
        "RESISTRY_SIMULATOR__BATCH_INTERVAL_SECONDS": "0.1",
        "RESISTRY_SIMULATOR__JITTER_SECONDS": "0",
    }
    command = [sys.executable, "-c", "from engine.cli import main; main()"]
    command += ["--config", str(config), "simulator", "--port", "0"]
    command += ["--webhook-url", receiver.url, "--time-scale", "1e7"]
    process = subprocess.Popen(
        command,
        cwd=project_root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        url = first_line.split(" on ")[1].split()[0]
        client = SendGridAPIClient(load_settings(config, environ={}).sendgrid.api_key, host=url)
        assert client.client.mail.send.post(request_body=mail(3)).status_code == 202
        deadline = time.monotonic() + 15
        while len(receiver.posts) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0
    assert "stopped: 3 messages" in output
    public_key = (config.parent / "instance" / wire.PUBLIC_KEY_FILE).read_text().strip()
    post = receiver.posts[0]
    assert EventWebhook(public_key).verify_signature(
        post.body.decode(),
        post.headers[wire.SIGNATURE_HEADER],
        post.headers[wire.TIMESTAMP_HEADER],
    )
    assert {event["email"] for event in json.loads(post.body)} <= {
        f"person{i}@example.org" for i in range(3)
    }
