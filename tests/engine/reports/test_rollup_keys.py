"""Live rollup writes and ``rebuild-rollups`` must store the same key for the same bucket."""

from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import VisitRollup
from engine.reports.rollups import RollupChanges

HOUR = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)


def test_upsert_after_a_stored_bucket_adds_to_it_not_beside_it(session: so.Session) -> None:
    # A row as the rebuild writes it (through the ORM, i.e. the dialect's own datetime format).
    session.add(VisitRollup(landing_variant_id=7, visit_hour=HOUR, visits=2, signups=1))
    session.flush()
    changes = RollupChanges()
    changes.visits[(7, HOUR)] = Counter(visits=3, signups=1)
    changes.apply(session)
    rows = session.execute(
        sa.select(VisitRollup.visit_hour, VisitRollup.visits, VisitRollup.signups).where(
            VisitRollup.landing_variant_id == 7
        )
    ).all()
    assert rows == [(HOUR, 5, 2)]
