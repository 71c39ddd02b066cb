from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Send
from tests.webhooks.helpers import Fixture
from webhooks import native


def test_native_times_round_trip_through_the_orm(session: so.Session, world: Fixture) -> None:
    dialect = session.get_bind().dialect.name
    encode, decode = native.encoder(dialect), native.decoder(dialect)
    moments = [
        datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC),
        datetime(2026, 11, 18, 6, 6, 40, 250_000, tzinfo=timezone(timedelta(hours=-5))),
    ]
    table = Send.__table__
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values(
            delivered_at=sa.type_coerce(sa.bindparam("b_at"), native.RAW),
            first_open_at=sa.type_coerce(sa.bindparam("b_open"), native.RAW),
        )
    )
    sends = world.sends[:2]
    rows = [
        {"b_id": s.id, "b_at": encode(m), "b_open": encode(None)}
        for s, m in zip(sends, moments, strict=True)
    ]
    native.execute_many(session.connection(), statement, rows)
    session.expire_all()
    for send, moment in zip(sends, moments, strict=True):
        stored = session.get(Send, send.id)
        assert stored is not None
        assert stored.delivered_at == moment and stored.first_open_at is None
    raw = session.execute(
        sa.select(sa.type_coerce(Send.delivered_at, native.RAW))
        .where(native.is_in(Send.id, [s.id for s in sends], dialect))
        .order_by(Send.id)
    ).scalars()
    values = list(raw)
    assert [decode(v) for v in values] == moments
    assert values[0] < values[1]  # native values compare like the times they hold
    assert values[0] == encode(moments[0])
