"""Webhook fixtures: a test signing key, an app that trusts it, and sends to attribute events to."""

from __future__ import annotations

import pytest
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from engine.app import create_app
from engine.settings import Settings
from tests.webhooks.helpers import Fixture, seed_sends
from webhooks import wire


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return wire.new_private_key()


@pytest.fixture
def webhook_settings(settings: Settings, signing_key: ec.EllipticCurvePrivateKey) -> Settings:
    return settings.replace(sendgrid={"webhook_public_key": wire.public_key_base64(signing_key)})


@pytest.fixture
def webhook_app(webhook_settings: Settings, sessions: so.sessionmaker[so.Session]) -> Flask:
    return create_app({"TESTING": True}, settings=webhook_settings, sessions=sessions)


@pytest.fixture
def webhook_client(webhook_app: Flask) -> FlaskClient:
    return webhook_app.test_client()


@pytest.fixture
def world(session: so.Session) -> Fixture:
    """Three sends of one mailing, with subject (click), body (open) and share (signup) arms."""
    fixture = seed_sends(session, 3)
    session.commit()
    return fixture
