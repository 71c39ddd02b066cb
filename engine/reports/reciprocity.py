"""Groups' reciprocity ledger: visitors sent, contacts generated, contacts received, visibility.

A group *generates* the contacts who signed up during a visit it sent (``Visit.source_group_id``)
and *receives* the contacts who ticked its box (``Signup.group_id``), whoever sent them. The plan
rests on a group receiving more than it sends. Earned visibility follows the landing page's rule
without its noise: score = max(floor, contacts generated so far), as a share of the active
groups' scores (variants.visibility holds the page's own formula).
The cross-group flow counts, for the visitors each group sent, the signups for every group.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Group, Signup, Visit
from engine.reports import DateRange
from engine.reports.sql import timeline_days, tune_for_reports, utc_day
from engine.reports.tables import Column, Table, ratio, sig

# As the landing page counts them: a visit generates a contact only if it stored a signup row
# (a returning person whose signup added no new group is not generated twice).
_LED_TO_SIGNUP = sa.exists().where(Signup.visit_id == Visit.id)


@dataclass
class ReciprocityReport:
    date_range: DateRange
    ledger: Table
    flow: Table
    diversification: Table
    visibility: Table

    def tables(self) -> list[Table]:
        return [self.ledger, self.flow, self.diversification, self.visibility]

    def as_json(self) -> dict[str, Any]:
        return {
            "range": self.date_range.as_json(),
            "tables": {table.name: table.as_json() for table in self.tables()},
        }


def reciprocity_report(
    session: so.Session, *, visibility_floor: int, date_range: DateRange | None = None
) -> ReciprocityReport:
    """Build the ledger over ``date_range`` (default: all time); visibility uses all history
    up to the end of the range, as the landing page does."""
    date_range = date_range or DateRange()
    tune_for_reports(session)
    groups = session.execute(
        sa.select(Group.id, Group.slug, Group.name, Group.active).order_by(Group.name, Group.id)
    ).all()
    slugs = {group_id: slug for group_id, slug, _, _ in groups}
    active = [group_id for group_id, _, _, is_active in groups if is_active]
    in_range = [Visit.source_group_id.is_not(None), *date_range.clauses(Visit.created_at)]
    visitors_sent = _distinct_per_group(session, Visit.visitor_id, in_range)
    generated = _distinct_per_group(session, Visit.contact_id, [*in_range, _LED_TO_SIGNUP])
    received = dict(
        session.execute(
            sa.select(Signup.group_id, sa.func.count())
            .where(*date_range.clauses(Signup.created_at))
            .group_by(Signup.group_id)
        ).all()
    )
    timeline = _visibility_timeline(session, date_range, list(slugs), active, visibility_floor)
    final_share = timeline[-1][1] if timeline else {}
    ledger_rows = []
    for group_id, slug, name, _ in groups:
        ledger_rows.append(
            {
                "group": slug,
                "name": name,
                "visitors_sent": visitors_sent.get(group_id, 0),
                "contacts_generated": generated.get(group_id, 0),
                "contacts_received": received.get(group_id, 0),
                "received_per_generated": ratio(
                    received.get(group_id, 0), generated.get(group_id, 0)
                ),
                "visibility_share": final_share.get(group_id, {}).get("share"),
            }
        )
    ledger = Table(
        "ledger",
        "Reciprocity ledger",
        [
            Column("group", "Group"),
            Column("name", "Name"),
            Column("visitors_sent", "Visitors sent", "int"),
            Column("contacts_generated", "Contacts generated", "int"),
            Column("contacts_received", "Contacts received", "int"),
            Column("received_per_generated", "Received / generated", "float"),
            Column("visibility_share", "Visibility earned (share)", "rate"),
        ],
        ledger_rows,
        note=f"Visibility share = max({visibility_floor}, contacts generated to date) over the "
        "sum for all groups: the landing page's ordering before its random noise.",
    )
    flow, diversification = _flow_tables(session, date_range, slugs)
    visibility_rows = [
        {
            "day": day.isoformat(),
            "group": slugs[group_id],
            "contacts_generated": values["generated"],
            "contacts_received": values["received"],
            "visibility_share": values["share"],
        }
        for day, by_group in timeline
        for group_id, values in by_group.items()
    ]
    visibility = Table(
        "visibility",
        "Earned visibility over time (cumulative)",
        [
            Column("day", "Day (UTC)"),
            Column("group", "Group"),
            Column("contacts_generated", "Contacts generated to date", "int"),
            Column("contacts_received", "Contacts received to date", "int"),
            Column("visibility_share", "Visibility share", "rate"),
        ],
        visibility_rows,
    )
    return ReciprocityReport(date_range, ledger, flow, diversification, visibility)


def _distinct_per_group(
    session: so.Session, column: sa.ColumnElement[Any], filters: list[sa.ColumnElement[bool]]
) -> dict[int, int]:
    """Distinct non-null ``column`` values per source group.

    Grouping twice (by group and value, then by group) lets PostgreSQL hash instead of sorting
    every row as ``count(DISTINCT …)`` does.
    """
    pairs = (
        sa.select(Visit.source_group_id.label("group_id"), column.label("value"))
        .where(*filters, column.is_not(None))
        .group_by(Visit.source_group_id, column)
        .subquery()
    )
    rows = session.execute(
        sa.select(pairs.c.group_id, sa.func.count()).group_by(pairs.c.group_id)
    ).all()
    return {group_id: count for group_id, count in rows}


def _flow_tables(
    session: so.Session, date_range: DateRange, slugs: dict[int, str]
) -> tuple[Table, Table]:
    """Signups by the group that sent the visitor and the group they joined."""
    cells = session.execute(
        sa.select(Visit.source_group_id, Signup.group_id, sa.func.count())
        .select_from(Signup)
        .join(Visit, Visit.id == Signup.visit_id)
        .where(Visit.source_group_id.is_not(None), *date_range.clauses(Signup.created_at))
        .group_by(Visit.source_group_id, Signup.group_id)
    ).all()
    flow_rows = [
        {"source_group": slugs[source], "joined_group": slugs[joined], "signups": count}
        for source, joined, count in sorted(cells, key=lambda c: (slugs[c[0]], slugs[c[1]]))
    ]
    per_source: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for source, joined, count in cells:
        totals = per_source[source]
        totals["signups"] += count
        totals["own" if source == joined else "other"] += count
        totals["groups_reached"] += source != joined
    diversification_rows = [
        {
            "source_group": slugs[source],
            "signups": totals["signups"],
            "to_own_group": totals["own"],
            "to_other_groups": totals["other"],
            "other_share": ratio(totals["other"], totals["signups"]),
            "other_groups_reached": totals["groups_reached"],
        }
        for source, totals in sorted(per_source.items(), key=lambda item: slugs[item[0]])
    ]
    flow = Table(
        "flow",
        "Cross-group flow: signups of each group's visitors, by group joined",
        [
            Column("source_group", "Visitor sent by"),
            Column("joined_group", "Joined"),
            Column("signups", "Signups", "int"),
        ],
        flow_rows,
    )
    diversification = Table(
        "diversification",
        "Diversification of membership",
        [
            Column("source_group", "Visitors sent by"),
            Column("signups", "Signups", "int"),
            Column("to_own_group", "Joined the sender", "int"),
            Column("to_other_groups", "Joined other groups", "int"),
            Column("other_share", "Share to other groups", "rate"),
            Column("other_groups_reached", "Other groups reached", "int"),
        ],
        diversification_rows,
    )
    return flow, diversification


def _visibility_timeline(
    session: so.Session, date_range: DateRange, group_ids: list[int], active: list[int], floor: int
) -> list[tuple[date, dict[int, dict[str, Any]]]]:
    """Cumulative generated/received contacts and the visibility share per group, per day.

    Only active groups are listed on the landing page, so only they share the visibility.
    """
    # A contact is generated on the day of the visit, as the ledger counts visits by their day.
    stop = [Visit.created_at < date_range.stop_at] if date_range.stop_at else []
    # Each contact once per group, on the day of its first visit from that group.
    firsts = (
        sa.select(
            Visit.source_group_id.label("group_id"),
            sa.func.min(Visit.created_at).label("first_at"),
        )
        .where(Visit.source_group_id.is_not(None), _LED_TO_SIGNUP, *stop)
        .group_by(Visit.source_group_id, Visit.contact_id)
        .subquery()
    )
    generated_day = utc_day(session, firsts.c.first_at)
    generated = session.execute(
        sa.select(firsts.c.group_id, generated_day, sa.func.count()).group_by(
            firsts.c.group_id, generated_day
        )
    ).all()
    received_day = utc_day(session, Signup.created_at)
    received_stop = [Signup.created_at < date_range.stop_at] if date_range.stop_at else []
    received = session.execute(
        sa.select(Signup.group_id, received_day, sa.func.count())
        .where(*received_stop)
        .group_by(Signup.group_id, received_day)
    ).all()
    daily: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for group_id, day, count in generated:
        daily[day][group_id][0] += count
    for group_id, day, count in received:
        daily[day][group_id][1] += count
    if not daily and not (date_range.start and date_range.end):
        return []
    first = date_range.start or date.fromisoformat(min(daily))
    last = date_range.end or date.fromisoformat(max(daily))
    days = timeline_days(first, last)
    running = {group_id: [0, 0] for group_id in group_ids}
    ordered = sorted(daily.items())
    position = 0
    timeline = []
    for day in days:
        while position < len(ordered) and ordered[position][0] <= day.isoformat():
            for group_id, (made, got) in ordered[position][1].items():
                if group_id in running:
                    running[group_id][0] += made
                    running[group_id][1] += got
            position += 1
        scores = {group_id: max(floor, running[group_id][0]) for group_id in active}
        total = sum(scores.values())
        timeline.append(
            (
                day,
                {
                    group_id: {
                        "generated": running[group_id][0],
                        "received": running[group_id][1],
                        "share": sig(scores[group_id] / total) if group_id in scores else None,
                    }
                    for group_id in group_ids
                },
            )
        )
    return timeline
