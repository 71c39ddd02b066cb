import pytest
import sqlalchemy.orm as so

from engine import stats
from engine.reports.policy_areas import UNTAGGED, policy_area_report
from tests.engine.reports import factories as f
from tests.engine.reports.factories import T0


def test_pools_experiments_by_area_and_metric(session: so.Session) -> None:
    climate_click = f.experiment(session, "subject", "click", policy_areas=["climate"])
    both_click = f.experiment(session, "body", "click", policy_areas=["climate", "housing"])
    landing = f.experiment(session, "landing", "signup", policy_areas=["climate"])
    f.experiment(session, "share", "signup")  # untagged, no trials
    m = f.mailing(session)
    f.send(session, m, subject=climate_click.variants[0], body=both_click.variants[0],
           first_click_at=T0)  # fmt: skip
    f.send(session, m, subject=climate_click.variants[1], body=both_click.variants[1])
    f.send(session, m, subject=climate_click.variants[1], status="failed")
    g = f.group(session, "g")
    f.visit(session, landing=landing.variants[0], joins=[g])
    f.visit(session, landing=landing.variants[1])

    report = policy_area_report(f.rebuilt(session))
    areas = {(row["policy_area"], row["metric"]): row for row in report.areas.rows}
    climate = areas[("climate", "click")]
    assert (climate["experiments"], climate["trials"], climate["successes"]) == (2, 4, 2)
    alpha, beta = stats.posterior([4], [2])
    low, high = stats.credible_interval(alpha, beta)
    assert (climate["ci_low"], climate["ci_high"]) == pytest.approx((low[0], high[0]), rel=1e-5)
    assert areas[("housing", "click")]["trials"] == 2
    assert areas[("climate", "signup")]["rate"] == 0.5
    assert areas[(UNTAGGED, "signup")]["trials"] == 0
    experiments = {row["experiment"]: row for row in report.experiments.rows}
    assert experiments[climate_click.key]["successes"] == 1
