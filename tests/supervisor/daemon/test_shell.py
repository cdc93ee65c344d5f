"""The daemon over the stand-ins: dispatch, claim timeout, breaker, restart, hung items, surface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from launch_supervisor.config import Config
from launch_supervisor.daemon.shell import Daemon
from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, launcher_job, stand_ins

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[tuple[Daemon, str]]:
    daemon = Daemon(config)
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(daemon.run)
        try:
            yield daemon, f"http://{host}:{port}"
        finally:
            daemon.stop("test over")


async def until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    with anyio.fail_after(timeout, shield=False):
        while not predicate():
            await anyio.sleep(0.02)
    assert predicate(), what


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url + "/metrics")).text


async def until_metric(url: str, name: str, value: float, timeout: float = 15.0, **labels: str) -> None:
    """Wait until the sample has `value`; a series that does not exist yet counts as not there yet."""
    with anyio.fail_after(timeout):
        while True:
            try:
                if metric(await scrape(url), name, **labels) == value:
                    return
            except AssertionError:
                pass
            await anyio.sleep(0.05)


def executions_of(stack: Stack, queue: str = "q") -> list[str]:
    return [n for n in stack.cloudrun.executions if n.startswith(launcher_job(queue) + "/")]


def claimed(stack: Stack) -> list[Any]:
    return [i for i in stack.wandb.items.values() if i.state == "CLAIMED"]


async def test_a_burst_gets_exactly_one_execution_per_pending_item() -> None:
    """Six items at once, room for ten: six executions, six CustomJobs, nothing more."""
    async with stand_ins(["q"]) as stack:
        for _ in range(6):
            stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("max_inflight = 10")) as (daemon, url):
            await until(lambda: len(stack.vertex.jobs) == 6, what="six CustomJobs")
            await anyio.sleep(1.0)  # several more ticks: still nothing new
            assert len(executions_of(stack)) == 6
            assert len(claimed(stack)) == 6
            runs = [j.job.labels["wandb-run-id"] for j in stack.vertex.jobs.values()]
            assert sorted(runs) == sorted(i.run_id for i in claimed(stack))
            stack.wandb.enqueue(ENTITY, "q")
            await until(lambda: len(executions_of(stack)) == 7, what="one more for the new item")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_dispatches_total", queue="q", result="started") == 7
            assert daemon.is_ready()


async def test_max_inflight_and_budget_hold() -> None:
    """Executions in flight never exceed max_inflight."""

    class Slow(SimulatedLauncher):
        async def run(self, handle: ExecutionHandle) -> None:
            await anyio.sleep(0.6)
            await super().run(handle)

    async with stand_ins(["q"], behaviour=Slow) as stack:
        for _ in range(5):
            stack.wandb.enqueue(ENTITY, "q")
        peak = 0
        async with running(stack.config("max_inflight = 2")):
            while len(stack.vertex.jobs) < 5:
                flying = sum(1 for n in executions_of(stack) if stack.cloudrun.status(n) in ("pending", "running"))
                peak = max(peak, flying)
                await anyio.sleep(0.02)
        assert peak == 2
        assert len(executions_of(stack)) == 5


async def test_claim_timeout_lets_another_execution_start() -> None:
    """An execution that never claims stops covering the item after claim_timeout."""

    class Stuck(SimulatedLauncher):
        calls = 0

        async def run(self, handle: ExecutionHandle) -> None:
            Stuck.calls += 1
            if Stuck.calls == 1:
                handle.running()
                await anyio.sleep_forever()
            await super().run(handle)

    async with stand_ins(["q"], behaviour=Stuck) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("claim_timeout = 1.5")):
            await until(lambda: len(executions_of(stack)) == 1)
            await anyio.sleep(1.0)
            assert len(executions_of(stack)) == 1
            await until(lambda: len(stack.vertex.jobs) == 1, what="the second execution submits")
            assert len(executions_of(stack)) == 2


async def test_breaker_opens_probes_closes_and_reopens() -> None:
    """Bailouts open the breaker; after the cooldown one probe runs; success closes, failure reopens."""
    outcomes = iter(["bailout", "bailout", "bailout", "submit", "bailout"])

    def plan(n: int) -> Plan:
        return Plan(outcome=next(outcomes, "submit"))

    async with stand_ins(["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=plan)) as stack:
        for _ in range(2):
            stack.wandb.enqueue(ENTITY, "q")
        settings = "max_inflight = 1\n[queues.breaker]\nthreshold = 2\ncooldown = 1.0\nmax_cooldown = 4.0"
        async with running(stack.config(settings)) as (daemon, url):
            state = daemon.state.queues["q"]
            await until(lambda: state.breaker.state.value == "open", what="breaker open after 2 bailouts")
            assert metric(await scrape(url), "launch_supervisor_breaker_open", queue="q") == 1
            opened = len(executions_of(stack))
            assert opened == 2
            stack.wandb.enqueue(ENTITY, "q")
            await anyio.sleep(0.5)
            assert len(executions_of(stack)) == opened  # open: nothing starts
            # half-open: one probe, which bails out (third plan) → reopened with a doubled cooldown
            await until(lambda: state.breaker.cooldown == 2.0, what="reopened after the probe")
            assert len(executions_of(stack)) == opened + 1
            # next probe submits (fourth plan) → closed
            stack.wandb.enqueue(ENTITY, "q")
            await until(lambda: state.breaker.state.value == "closed", timeout=20, what="closed by a good probe")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_bailouts_total", queue="q", category="crash") == 3
            assert metric(text, "launch_supervisor_breaker_open", queue="q") == 0


async def test_resume_closes_an_open_breaker_over_http() -> None:
    """POST /resume/QUEUE from loopback closes the breaker; unknown queues are 404."""
    async with stand_ins(["q"]) as stack, running(stack.config()) as (daemon, url):
        daemon.state.queues["q"].breaker.bailout(0.0, "permission")
        async with httpx.AsyncClient() as client:
            response = await client.post(url + "/resume/q")
            assert response.json() == {"queue": "q", "breaker": "closed", "was": "open"}
            assert (await client.post(url + "/resume/nope")).status_code == 404
        assert daemon.state.queues["q"].breaker.state.value == "closed"


async def test_restart_with_executions_in_flight_dispatches_no_duplicate() -> None:
    """A new daemon adopts the executions still running and starts nothing for items they cover."""

    class Slow(SimulatedLauncher):
        async def run(self, handle: ExecutionHandle) -> None:
            handle.running()
            await anyio.sleep(2.5)
            await super().run(handle)

    async with stand_ins(["q"], behaviour=Slow) as stack:
        for _ in range(3):
            stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()):
            await until(lambda: len(executions_of(stack)) == 3)
        async with running(stack.config()) as (daemon, _url):
            await until(daemon.is_ready)
            assert sum(1 for e in daemon.state.queues["q"].executions.values() if e.recovered) == 3
            await until(lambda: len(stack.vertex.jobs) == 3, what="the first three submit")
            await anyio.sleep(0.5)
            assert len(executions_of(stack)) == 3


async def test_an_item_whose_customjob_failed_is_failed_exactly_once() -> None:
    """The CustomJob ends FAILED while its item is CLAIMED: failRunQueueItem once, with Vertex's message."""
    plan = Plan(vertex_error="The replica workerpool0-0 exited with a non-zero status of 137.")
    async with stand_ins(["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: plan)) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (_daemon, url):
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="item failed by the supervisor")
            await anyio.sleep(1.0)  # several more Vertex polls
            assert stack.wandb.items[item].failures == [(plan.vertex_error, "run")]
            assert stack.wandb.faults.calls["failRunQueueItem"] == 1
            text = await scrape(url)
            assert metric(text, "launch_supervisor_items_failed_by_supervisor_total", queue="q") == 1
            assert metric(text, "launch_supervisor_vertex_jobs", queue="q", state="FAILED") == 1


async def test_an_item_stranded_claimed_is_failed_unless_its_run_has_a_custom_job() -> None:
    """Two items CLAIMED with no execution: the one whose run has a CustomJob (older than the
    listing's lookback, so only a search for its run finds it) is left alone; the other is failed
    as lost, once, after `stranded_after`."""
    from launch_supervisor.config import parse_config
    from launch_supervisor.sandbox.simulated import custom_job

    async with stand_ins(["q"]) as stack:
        lost, kept = stack.wandb.enqueue(ENTITY, "q"), stack.wandb.enqueue(ENTITY, "q")
        for item, run in ((lost, "run-lost"), (kept, "run-kept")):  # popped and acked by an agent now gone
            assert stack.wandb.pop(ENTITY, "q") is not None
            assert stack.wandb.ack(item, run)
        stack.vertex.create(custom_job("q", "not-the-item", "run-kept"))
        await anyio.sleep(1.2)  # the job is now older than the 1 s lookback
        env = {"WANDB_API_KEY": stack.api_key, "LAUNCH_SUPERVISOR_GCP__VERTEX_LOOKBACK": "1"}
        config = parse_config(stack.config_toml("stranded_after = 1"), "test", env)
        async with running(config) as (daemon, url):
            await until(lambda: stack.wandb.items[lost].state == "FAILED", what="the stranded item failed")
            await anyio.sleep(1.0)  # several more Vertex ticks
            assert stack.wandb.items[kept].state == "CLAIMED"
            assert stack.wandb.faults.calls["failRunQueueItem"] == 1
            [(message, stage)] = stack.wandb.items[lost].failures
            assert stage == "agent"
            assert "no Vertex AI job" in message
            assert "run-lost" in message
            text = await scrape(url)
            labels = {"queue": "q", "reason": "stranded"}
            assert metric(text, "launch_supervisor_items_failed_by_supervisor_total", **labels) == 1
            assert daemon.state.queues["q"].items[kept].vertex_job is not None


async def test_status_and_metrics_surface() -> None:
    """/status lists queues, executions and Vertex jobs; /metrics has every series, no ids as labels."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (daemon, url):
            await until(lambda: len(stack.vertex.jobs) == 1)
            await until(lambda: any(e.phase.finished for e in daemon.state.queues["q"].executions.values()))
            await until(lambda: len(daemon.state.vertex_jobs) == 1, what="a Vertex tick that lists the job")
            async with httpx.AsyncClient() as client:
                status = (await client.get(url + "/status")).json()
                assert (await client.get(url + "/readyz")).status_code == 200
                assert (await client.get(url + "/healthz")).json()["ok"] is True
            assert status["queues"]["q"]["breaker"]["state"] == "closed"
            assert status["executions"][0]["phase"] == "succeeded"
            assert status["vertex_jobs"][0]["queue"] == "q"
            assert stack.api_key not in str(status)
            text = await scrape(url)
            for name in (
                "launch_supervisor_claim_latency_seconds_count",
                "launch_supervisor_submit_latency_seconds_count",
                "launch_supervisor_queue_wait_seconds_count",
            ):
                assert metric(text, name, queue="q") == 1
            assert metric(text, "launch_supervisor_executions_finished_total", queue="q", outcome="succeeded") == 1
            assert metric(text, "launch_supervisor_bailouts_total", queue="q", category="permission") == 0
            assert metric(text, "launch_supervisor_bailouts_total", queue="q", category="dispatch_refused") == 0
            assert metric(text, "launch_supervisor_dispatches_total", queue="q", result="refused") == 0
            assert (
                metric(text, "launch_supervisor_executions_cancelled_total", queue="q", reason="stop_after_submit") == 0
            )
            await until_metric(url, "launch_supervisor_post_submit_seconds_count", 1, queue="q")
            assert metric(text, "launch_supervisor_api_requests_total", api="cloudrun", method="RunJob", code="OK") == 1
            assert "launch_supervisor_build_info" in text
            assert "executions/" not in text
            assert 'le="14400.0"' in text


async def test_auth_errors_stop_that_queue_not_the_daemon() -> None:
    """A 401 from W&B stops polling the queue, loudly, and the daemon stays healthy."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.api_key = "rotated-away"
        async with running(stack.config()) as (daemon, url):
            await until(lambda: daemon.state.stopped.get("q") == "auth")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_queue_polling_stopped", queue="q", reason="auth") == 1
            calls = stack.wandb.faults.calls["GetRunQueueItems"]
            await anyio.sleep(0.6)
            assert stack.wandb.faults.calls["GetRunQueueItems"] == calls
            async with httpx.AsyncClient() as client:
                assert (await client.get(url + "/healthz")).json()["ok"] is True


async def test_a_key_revoked_while_running_fails_calls_not_the_daemon() -> None:
    """W&B rejects the key after work started: failRunQueueItem's 401 is a failed Vertex loop step
    (logged, counted, tried again), polling that queue stops, and the daemon stays up and healthy."""
    from launch_supervisor.sandbox.vertex_server import Schedule

    plan = Plan(vertex_error="The replica workerpool0-0 exited with a non-zero status of 137.")
    async with stand_ins(["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: plan)) as stack:
        stack.vertex.schedule = Schedule(done=2.0)
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (daemon, url):
            queue = daemon.state.queues["q"]
            seen = lambda: item in queue.items and queue.items[item].state.value == "CLAIMED"  # noqa: E731
            await until(lambda: seen() and queue.items[item].vertex_job is not None, what="item and job seen")
            stack.wandb.api_key = "revoked"
            await until_metric(url, "launch_supervisor_loop_failures_total", 1, loop="vertex")
            await until(lambda: daemon.state.stopped.get("q") == "auth", what="polling stopped")
            assert stack.wandb.items[item].state == "CLAIMED"
            async with httpx.AsyncClient() as client:
                assert (await client.get(url + "/healthz")).json()["ok"] is True
            stack.wandb.api_key = stack.api_key  # restored: the next Vertex tick fails the item
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="item failed after all")


async def test_errors_and_timeouts_from_every_api_are_survived() -> None:
    """5xx and slow answers from W&B, Cloud Run and Vertex: counted, then work resumes."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.faults.add("GetRunQueueItems", Fault(status=503), times=6)
        stack.wandb.faults.add("GetRunQueueItems", Fault(delay=3.0), times=3)
        stack.cloudrun.faults.add("ListExecutions", Fault(status="UNAVAILABLE"), times=10)
        stack.vertex.faults.add("ListCustomJobs", Fault(status="INTERNAL"), times=10)
        stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (daemon, url):
            await until(lambda: len(stack.vertex.jobs) == 1, timeout=30, what="dispatch after the faults")
            await until(lambda: daemon.state.vertex_jobs != {}, timeout=30, what="Vertex listing recovers")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_loop_failures_total", loop="queue") >= 1
            assert (
                metric(text, "launch_supervisor_api_requests_total", api="wandb", method="GetRunQueueItems", code="503")
                >= 3
            )
            assert len(executions_of(stack)) == 1


async def test_an_unknown_run_job_result_is_not_retried_blindly() -> None:
    """RunJob times out but the execution was created: the next listing adopts it; no second one."""

    async with stand_ins(["q"]) as stack:
        stack.cloudrun.faults.add("RunJob", Fault(delay=3.0, late=True))  # created; answer after the 2 s deadline
        stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (daemon, url):
            await until_metric(url, "launch_supervisor_dispatches_total", 1, queue="q", result="unknown")
            await until(
                lambda: daemon.state.queues["q"].dispatching.uncertain_since is None, what="a listing settled it"
            )
            await anyio.sleep(0.5)
            assert len(executions_of(stack)) == 1
            assert stack.cloudrun.faults.calls["RunJob"] == 1
            assert len(stack.vertex.jobs) == 1


async def test_a_refused_run_job_backs_the_queue_off_and_is_logged_once_per_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RunJob keeps being refused (PERMISSION_DENIED), then once more differently (NOT_FOUND): the queue
    backs off instead of calling RunJob at every wake-up, each refusal counts as a dispatch_refused
    bailout, each error is logged once, and the item is dispatched once RunJob is accepted again."""
    from structlog.testing import capture_logs

    from launch_supervisor.model import dispatching as model

    monkeypatch.setattr(model, "REFUSAL_BACKOFF", 0.3)  # 0.3, 0.6, 1.0, 1.0… s: the test's few seconds
    monkeypatch.setattr(model, "REFUSAL_BACKOFF_MAX", 1.0)
    async with stand_ins(["q"]) as stack:
        faults = stack.cloudrun.faults
        faults.add("RunJob", Fault(status="PERMISSION_DENIED"), times=1000)
        stack.wandb.enqueue(ENTITY, "q")
        with capture_logs() as logs:
            async with running(stack.config("[queues.breaker]\nthreshold = 10")) as (daemon, url):
                await until(lambda: faults.calls["RunJob"] == 1, what="the first RunJob")
                await anyio.sleep(2.5)
                calls = faults.calls["RunJob"]
                held = [e for e in logs if e["event"] == "dispatch.decision" and e["why"] == "refused"]
                assert 2 <= calls <= 5, "0.3 + 0.6 + 1.0 s of backoff in 2.5 s"
                assert len(held) >= 3 * calls, "wake-ups held back, each of which used to call RunJob"
                faults.planned["RunJob"].clear()
                faults.add("RunJob", Fault(status="NOT_FOUND"))
                await until(lambda: len(stack.vertex.jobs) == 1, what="dispatched once RunJob is accepted")
                await anyio.sleep(0.5)
                text = await scrape(url)
                assert daemon.state.queues["q"].dispatching.refusal is None
        refusals = faults.calls["RunJob"] - 1
        assert refusals == calls + 1
        assert len(executions_of(stack)) == 1
        refused = [e for e in logs if e["event"] == "dispatch.refused"]
        assert [e["log_level"] for e in refused] == ["error", "error"]
        assert "PermissionDenied" in refused[0]["error"]
        assert "NotFound" in refused[1]["error"]
        assert [e["event"] for e in logs].count("dispatch.recovered") == 1
        assert metric(text, "launch_supervisor_dispatches_total", queue="q", result="refused") == refusals
        assert metric(text, "launch_supervisor_dispatches_total", queue="q", result="started") == 1
        assert metric(text, "launch_supervisor_bailouts_total", queue="q", category="dispatch_refused") == refusals
        assert metric(text, "launch_supervisor_breaker_open", queue="q") == 0


async def test_a_persisting_error_is_logged_once_then_its_recovery() -> None:
    """A listing answered with the same GraphQL error for many ticks: one loop.failed, every tick
    counted, one loop.recovered."""
    from structlog.testing import capture_logs

    async with stand_ins(["q"]) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        stack.wandb.faults.add("GetRunQueueItems", Fault(status=200), times=5)
        with capture_logs() as logs:
            async with running(stack.config()) as (_daemon, url):
                await until_metric(url, "launch_supervisor_loop_failures_total", 5, loop="queue")  # all five, then none
                await until(lambda: any(e["event"] == "loop.recovered" for e in logs), what="recovery logged")
        failed = [e for e in logs if e["event"] == "loop.failed" and e["loop"] == "queue:q"]
        assert len(failed) == 1
        assert "injected fault" in failed[0]["error"]


async def test_a_lingering_execution_paired_only_by_counting_is_not_cancelled() -> None:
    """Without events the pairing of execution and item is inferred, and may be wrong: the daemon
    leaves the execution to its task timeout. Its post-submit time is still measured when it ends."""
    plan = Plan(outcome="linger")
    async with stand_ins(["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: plan)) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("stop_after_submit = 0.5\nexecution_timeout = 2.5")) as (daemon, url):
            await until(lambda: len(stack.vertex.jobs) == 1, what="the CustomJob")
            await until(
                lambda: any(e.phase.finished for e in daemon.state.queues["q"].executions.values()),
                what="the execution ends at its task timeout",
            )
            assert stack.cloudrun.cancels == []
            await until_metric(url, "launch_supervisor_post_submit_seconds_count", 1, queue="q")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_post_submit_seconds_sum", queue="q") >= 2.0
            assert (
                metric(text, "launch_supervisor_executions_cancelled_total", queue="q", reason="stop_after_submit") == 0
            )
