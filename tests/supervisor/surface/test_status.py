"""The /status view, read from the model."""

from __future__ import annotations

from launch_supervisor.model.state import State
from launch_supervisor.surface.status import status_view
from tests.supervisor.model.test_queue import ex, pending, policy


def test_the_view_shows_queues_executions_and_breakers_newest_first() -> None:
    """Pending count, executions in flight by phase, the breaker and when it reopens, capped lists."""
    state = State()
    state.apply_policy([policy(name="q", breaker_cooldown=60.0)])
    queue = state.queues["q"]
    queue.observe_items(pending("a", "b"), 0.0)
    queue.dispatched(ex(1), 1.0)
    queue.dispatched(ex(2), 2.0)
    queue.breaker.bailout(3.0, "permission")
    state.stop_polling("q", "auth")
    view = status_view(state, 13.0, version="1.2.3", ready=True, uptime=20.04)
    assert (view["version"], view["ready"], view["uptime_s"]) == ("1.2.3", True, 20.0)
    q = view["queues"]["q"]
    assert (q["polling"], q["pending"], q["in_flight"]["dispatched"]) == ("auth", 2, 2)
    assert (q["breaker"]["state"], q["breaker"]["reopens_in_s"]) == ("open", 50.0)
    assert [e["name"] for e in view["executions"]] == [ex(2), ex(1)]
    assert view["executions"][0]["age_s"] == 11.0
    assert view["vertex_jobs"] == []


def test_the_view_says_why_a_budgeted_queue_dispatches_nothing() -> None:
    """Before the first listing: the spend is not known; at or over the budget: how much of it."""
    from dataclasses import replace

    from launch_supervisor.model.state import State
    from launch_supervisor.surface.status import status_view
    from tests.supervisor.model.test_queue import policy

    state = State()
    state.apply_policy([replace(policy(name="q"), daily_budget=20.0)])
    cost = status_view(state, 0.0, version="t", ready=True, uptime=1.0)["queues"]["q"]["cost"]
    assert cost == {
        "spend_24h": None,
        "daily_budget": 20.0,
        "over_budget": False,
        "held": "spend not known yet: waiting for the first CustomJob listing",
    }
    state.queues["q"].spending.spend = 21.5
    cost = status_view(state, 0.0, version="t", ready=True, uptime=1.0)["queues"]["q"]["cost"]
    assert cost["over_budget"] is True
    assert cost["held"] == "over budget: $21.50 spent in the last 24 h, daily_budget $20.00"
