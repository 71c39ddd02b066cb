"""Comparing the live report rollups with a rebuild from the rows, and driving the real paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from engine import tokens
from engine.models.rollups import ROLLUP_TABLES
from engine.reports.rebuild import rebuild_rollups
from engine.settings import Settings
from engine.simulator import SimulatorHandle
from engine.simulator.wire import encode_batch, load_or_create_key_pair, signed_headers
from tests.variants.landing_support import form_fields
from tests.webhooks.helpers import apply_inbox

Snapshot = dict[str, list[tuple[Any, ...]]]
ROLLUP_BY_NAME = {table.name: table for table in ROLLUP_TABLES}


def rollup_rows(session: so.Session) -> Snapshot:
    """Every rollup table's rows in key order, leaving out rows whose counters are all zero (a
    count moved away from a bucket leaves its row behind; reports add zeros harmlessly)."""
    session.flush()
    snapshot: Snapshot = {}
    for table in ROLLUP_TABLES:
        keys = len(table.primary_key.columns)
        rows = session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
        snapshot[table.name] = [tuple(row) for row in rows if any(row[keys:])]
    return snapshot


def assert_rollups_match_rebuild(session: so.Session) -> Snapshot:
    """The rollups the write points kept equal a rebuild from the rows; returns them."""
    live = rollup_rows(session)
    rebuild_rollups(session)
    rebuilt = rollup_rows(session)
    for name in rebuilt:
        assert live[name] == rebuilt[name], f"{name} differs from a rebuild"
    return live


def totals(snapshot: Snapshot, table: str, counter: str) -> int:
    """The sum of one counter over a rollup table of a snapshot."""
    names = [column.key for column in ROLLUP_BY_NAME[table].columns]
    return sum(row[names.index(counter)] for row in snapshot[table])


@dataclass
class Site:
    """The app, pointed at a SendGrid simulator whose signed posts it accepts."""

    settings: Settings
    app: Flask
    simulator: SimulatorHandle
    key_dir: Path
    now: list[datetime]

    def visitor(self) -> FlaskClient:
        """A new browser (its own cookie, so its own visitor id)."""
        return self.app.test_client()

    def post_events(self, events: Sequence[dict[str, Any]], batch: int = 40) -> None:
        """Post ``events`` to the webhook in signed batches, as SendGrid does."""
        key = load_or_create_key_pair(self.key_dir)
        client = self.app.test_client()
        for start in range(0, len(events), batch):
            body = encode_batch(list(events[start : start + batch]))
            response = client.post(
                "/webhooks/sendgrid", data=body, headers=signed_headers(key, "1795000000", body)
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        apply_inbox(self.app)  # as the applier process does

    def email_link(self, code: str, send_id: int, group_slug: str | None = None) -> str:
        """The path of a recruiter's link from send ``send_id`` (plus ``?g=`` when given)."""
        token = tokens.sign(self.settings.secret_key, tokens.SEND, send_id)
        path = f"/?r={code}&t={token}"
        return path + (f"&g={group_slug}" if group_slug else "")

    def unsubscribe(self, send_id: int) -> None:
        token = tokens.sign(self.settings.secret_key, tokens.UNSUBSCRIBE, send_id)
        response = self.app.test_client().post(f"/unsubscribe/{token}")
        assert response.status_code == 200


def open_page(client: FlaskClient, path: str) -> dict[str, str]:
    """GET a landing path; returns the form's hidden fields (to sign up from this view)."""
    response = client.get(path)
    assert response.status_code == 200
    return form_fields(response.get_data(as_text=True))


def submit(
    client: FlaskClient, fields: dict[str, str], email: str, groups: Sequence[str]
) -> TestResponse:
    """POST the signup form of an earlier view (its hidden fields) with ``groups`` ticked."""
    data: dict[str, object] = {**fields, "email": email, "zip": "10001", "groups": list(groups)}
    response = client.post("/signup", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert urlsplit(response.headers["Location"]).path == "/thanks"
    return response
