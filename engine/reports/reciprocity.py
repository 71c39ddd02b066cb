"""Groups' reciprocity ledger: visitors sent, contacts generated, contacts received, visibility.

A group *generates* the contacts who signed up during a visit it sent (``Visit.source_group_id``)
and *receives* the contacts who ticked its box (``Signup.group_id``), whoever sent them. The plan
rests on a group receiving more than it sends. Earned visibility follows the landing page's rule
without its noise: score = max(floor, contacts generated so far), as a share of the active
groups' scores (variants.visibility holds the page's own formula).
The cross-group flow counts, for the visitors each group sent, the signups for every group.

The numbers come from the daily group rollups (:class:`~engine.models.GroupRollup`,
:class:`~engine.models.GroupFlowRollup`). A visitor counts once per group, on the UTC day of
their first visit from it, and a contact on the day of their first visit from it that led to a
signup; so a range counts the visitors and contacts a group brought *for the first time* in it.
Signups (received, flow) count on the day they were made.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Group, GroupFlowRollup, GroupRollup
from engine.reports import DateRange
from engine.reports.sql import timeline_days
from engine.reports.tables import Column, Table, ratio, sig


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
    groups = session.execute(
        sa.select(Group.id, Group.slug, Group.name, Group.active).order_by(Group.name, Group.id)
    ).all()
    slugs = {group_id: slug for group_id, slug, _, _ in groups}
    active = [group_id for group_id, _, _, is_active in groups if is_active]
    ledger_totals = {
        group_id: (int(sent), int(made), int(got))
        for group_id, sent, made, got in session.execute(
            sa.select(
                GroupRollup.group_id,
                sa.func.sum(GroupRollup.visitors_sent),
                sa.func.sum(GroupRollup.contacts_generated),
                sa.func.sum(GroupRollup.contacts_received),
            )
            .where(*date_range.day_clauses(GroupRollup.day))
            .group_by(GroupRollup.group_id)
        )
    }
    visitors_sent = {group_id: totals[0] for group_id, totals in ledger_totals.items()}
    generated = {group_id: totals[1] for group_id, totals in ledger_totals.items()}
    received = {group_id: totals[2] for group_id, totals in ledger_totals.items()}
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
        note="Visitors and contacts count on the day the group first brought them; signups on "
        f"the day they were made. Visibility share = max({visibility_floor}, contacts generated "
        "to date) over the sum for all groups: the landing page's ordering before its random "
        "noise.",
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


def _flow_tables(
    session: so.Session, date_range: DateRange, slugs: dict[int, str]
) -> tuple[Table, Table]:
    """Signups by the group that sent the visitor and the group they joined."""
    cells = [
        (source, joined, int(count))
        for source, joined, count in session.execute(
            sa.select(
                GroupFlowRollup.source_group_id,
                GroupFlowRollup.joined_group_id,
                sa.func.sum(GroupFlowRollup.signups),
            )
            .where(*date_range.day_clauses(GroupFlowRollup.day))
            .group_by(GroupFlowRollup.source_group_id, GroupFlowRollup.joined_group_id)
        )
    ]
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
    # Each contact once per group, on the day of its first visit from that group (rollups).
    upto = [GroupRollup.day <= date_range.end] if date_range.end else []
    daily: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for group_id, day, made, got in session.execute(
        sa.select(
            GroupRollup.group_id,
            GroupRollup.day,
            GroupRollup.contacts_generated,
            GroupRollup.contacts_received,
        ).where(*upto)
    ):
        daily[day.isoformat()][group_id][0] += made
        daily[day.isoformat()][group_id][1] += got
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
