"""Events over Pub/Sub, against Google's emulator: hints, idempotency, bad messages, order, restarts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
from launch_supervisor.sandbox.process_launcher import ProcessLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, launcher_job, stand_ins
from tests.emulator import PROJECT, Emulator, require_emulator, running_emulator
from tests.supervisor.daemon.test_shell import executions_of, metric, running, scrape, until, until_metric
from tests.watchdog import agent_lines

pytestmark = pytest.mark.anyio
AGENT = Path(__file__).resolve().parents[3] / "tests" / "watchdog" / "agent.py"


class Hold:
    """Executions that stay running until cancelled."""

    async def run(self, handle: ExecutionHandle) -> None:
        handle.running()
        await anyio.sleep_forever()


def make_topic(host: str, name: str) -> tuple[str, str]:
    from google.api_core.client_options import ClientOptions
    from google.cloud import pubsub_v1

    options = ClientOptions(api_endpoint=host)
    publisher = pubsub_v1.PublisherClient(client_options=options)
    subscriber = pubsub_v1.SubscriberClient(client_options=options)
    topic = publisher.topic_path(PROJECT, name)
    subscription = subscriber.subscription_path(PROJECT, name)
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)
    subscriber.close()
    return topic, subscription


@pytest.fixture
def events(pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A topic and subscription on the session emulator; PUBSUB_EMULATOR_HOST set for the daemon."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    name = request.node.name.replace("_", "-")[:50]
    topic, subscription = make_topic(pubsub_emulator.host, name)
    return Bus(topic, subscription)


class Bus:
    def __init__(self, topic: str, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self.topic = topic
        self.subscription = subscription
        self._publisher = pubsub_v1.PublisherClient()

    def publish_soon(self, body: dict[str, Any]) -> None:
        """Publish without waiting, as a launcher does from its own process."""
        self._publisher.publish(self.topic, json.dumps(body).encode())

    async def publish(self, body: bytes | dict[str, Any], **attributes: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await anyio.to_thread.run_sync(lambda: self._publisher.publish(self.topic, data, **attributes).result(30))

    def config(self, stack: Stack, queue_settings: str = "", poll: float = 30.0) -> Any:
        extra = f'\n[pubsub]\nsubscription = "{self.subscription}"\n'
        toml = stack.config_toml(queue_settings, extra).replace("queue_interval = 0.2", f"queue_interval = {poll}")
        from launch_supervisor.config import parse_config

        return parse_config(toml, "test", {"WANDB_API_KEY": stack.api_key})


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


async def test_a_hint_dispatches_without_waiting_for_the_poll(events: Bus) -> None:
    """queue.item_added wakes the queue: dispatch follows at once, not at the 30 s poll."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack)) as (daemon, url):
            await until(daemon.is_ready)
            await anyio.sleep(1.0)  # the subscriber is up; the next poll is ~29 s away
            stack.wandb.enqueue(ENTITY, "q")
            await events.publish({"event": "queue.item_added", "queue": "q", "entity": ENTITY}, type="queue.item_added")
            await until(lambda: len(executions_of(stack)) == 1, timeout=5, what="dispatch on the hint")
            await until_metric(
                url, "launch_supervisor_pubsub_messages_total", 1, type="queue.item_added", result="applied"
            )


async def test_a_burst_of_hints_is_coalesced(events: Bus) -> None:
    """100 hints give a handful of polls, not 100."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack)) as (daemon, url):
            await until(daemon.is_ready)
            await anyio.sleep(1.0)
            polls = stack.wandb.faults.calls["GetRunQueueItems"]
            hint = {"event": "queue.item_added", "queue": "q"}
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(events.publish, hint)
            await until_metric(
                url, "launch_supervisor_pubsub_messages_total", 100, type="queue.item_added", result="applied"
            )
            await anyio.sleep(0.5)
            assert stack.wandb.faults.calls["GetRunQueueItems"] - polls <= 25  # at least 4x fewer polls than hints


async def test_duplicate_delivery_has_one_effect(events: Bus) -> None:
    """The same bailout event twice: applied once, counted as a duplicate once."""
    async with stand_ins(["q"], behaviour=lambda w, v: Hold()) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        async with running(events.config(stack, poll=0.2)) as (daemon, url):
            await until(lambda: len(executions_of(stack)) == 1)
            execution = executions_of(stack)[0]
            event = {
                "event": "watchdog.bailout",
                "execution": short(execution),
                "queue": "q",
                "rule": "quota_exceeded",
                "category": "quota",
                "detection_ms": 0.8,
            }
            await events.publish(event, type="watchdog.bailout")
            await events.publish(event, type="watchdog.bailout")
            await until_metric(
                url, "launch_supervisor_pubsub_messages_total", 1, type="watchdog.bailout", result="duplicate"
            )
            text = await scrape(url)
            assert (
                metric(text, "launch_supervisor_pubsub_messages_total", type="watchdog.bailout", result="applied") == 1
            )
            assert metric(text, "launch_supervisor_bailout_detection_seconds_count", queue="q") == 1
            assert daemon.state.queues["q"].executions[execution].category == "quota"


async def test_an_execution_still_running_after_its_custom_job_is_cancelled_once(events: Bus) -> None:
    """The agent created the CustomJob but its watchdog missed it (no `submitted` event): the daemon
    cancels the execution, which its `claimed` event pairs with the item, `stop_after_submit` after
    the job's create_time, once; it ends CANCELLED, the item is left to its run, and the time from
    submission to the end is measured."""
    from structlog.testing import capture_logs

    from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher

    def launcher(w: Any, v: Any) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, plan=lambda n: Plan(outcome="linger"), events=events.publish_soon)

    async with stand_ins(["q"], behaviour=launcher) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        with capture_logs() as logs:
            async with running(events.config(stack, "stop_after_submit = 0.5", poll=0.2)) as (daemon, url):
                await until(lambda: len(stack.cloudrun.cancels) == 1, timeout=20, what="one cancel")
                [execution] = executions_of(stack)
                assert stack.cloudrun.cancels == [execution]
                await until(lambda: stack.cloudrun.status(execution) == "cancelled", what="the execution ends")
                await until(lambda: daemon.state.queues["q"].executions[execution].phase.value == "cancelled")
                await until_metric(url, "launch_supervisor_post_submit_seconds_count", 1, queue="q")
                await anyio.sleep(1.0)  # several more ticks: no second cancel
                assert stack.cloudrun.cancels == [execution]
                assert stack.cloudrun.faults.calls["CancelExecution"] == 1
                text = await scrape(url)
                reason = "stop_after_submit"
                assert metric(text, "launch_supervisor_executions_cancelled_total", queue="q", reason=reason) == 1
                assert metric(text, "launch_supervisor_post_submit_seconds_sum", queue="q") >= 0.5
                assert metric(text, "launch_supervisor_items_failed_by_supervisor_total", queue="q") == 0
                assert stack.wandb.items[item].state == "CLAIMED"
        [job] = stack.vertex.jobs.values()
        ended = stack.cloudrun.executions[execution].completion_time
        assert (ended - job.job.create_time).total_seconds() >= 0.5  # not before stop_after_submit
        [logged] = [e for e in logs if e["event"] == "execution.cancel_requested"]
        assert (logged["execution"], logged["reason"], logged["custom_job"]) == (execution, reason, job.job.name)


async def test_a_cancel_whose_answer_is_lost_is_counted_once(events: Bus) -> None:
    """CancelExecution takes effect but its answer is lost (a deadline on the client): the listing
    showing the execution cancelled counts that cancel, once, whatever a retry is answered."""
    from launch_supervisor.sandbox.faults import Fault
    from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher

    def launcher(w: Any, v: Any) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, plan=lambda n: Plan(outcome="linger"), events=events.publish_soon)

    async with stand_ins(["q"], behaviour=launcher) as stack:
        stack.cloudrun.faults.add("CancelExecution", Fault(status="DEADLINE_EXCEEDED", late=True))
        stack.wandb.enqueue(ENTITY, "q")
        async with running(events.config(stack, "stop_after_submit = 0.5", poll=0.2)) as (daemon, url):
            await until(lambda: len(stack.cloudrun.cancels) == 1, timeout=20, what="the cancel takes")
            [execution] = executions_of(stack)
            await until(lambda: daemon.state.queues["q"].executions[execution].phase.value == "cancelled")
            await anyio.sleep(1.0)  # several more ticks: nothing counted twice
            text = await scrape(url)
            reason = "stop_after_submit"
            assert metric(text, "launch_supervisor_executions_cancelled_total", queue="q", reason=reason) == 1


async def test_malformed_messages_are_acked_logged_once_and_counted(events: Bus) -> None:
    """Garbage is acked (never redelivered), counted by kind, and the daemon carries on."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack)) as (daemon, url):
            await until(daemon.is_ready)
            for body in (b"\xff not json", b"[1, 2]", {"event": "watchdog.claimed", "queue": "q"}, {"event": "odd"}):
                await events.publish(body)
            for kind in ("not_json", "not_object", "missing_field", "unknown_type"):
                await until_metric(url, "launch_supervisor_pubsub_messages_total", 1, type="malformed", result=kind)
            await anyio.sleep(12)  # past the ack deadline: nothing comes back
            text = await scrape(url)
            for kind in ("not_json", "not_object", "missing_field", "unknown_type"):
                assert metric(text, "launch_supervisor_pubsub_messages_total", type="malformed", result=kind) == 1


async def test_events_out_of_order_still_pair_execution_item_and_job(events: Bus) -> None:
    """`submitted` before `claimed`: both land; the execution ends up with its item and CustomJob."""
    async with stand_ins(["q"], behaviour=lambda w, v: Hold()) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(events.config(stack, poll=0.2)) as (daemon, url):
            await until(lambda: len(executions_of(stack)) == 1)
            execution = executions_of(stack)[0]
            job = "projects/123/locations/us-central1/customJobs/42"
            base = {"execution": short(execution), "queue": "q"}
            await events.publish({**base, "event": "watchdog.submitted", "custom_job": job, "item_id": item})
            await events.publish({**base, "event": "watchdog.claimed", "item_id": item})
            await until_metric(
                url, "launch_supervisor_pubsub_messages_total", 1, type="watchdog.claimed", result="applied"
            )
            record = daemon.state.queues["q"].executions[execution]
            assert (record.item_id, record.vertex_job, record.phase.value) == (item, job, "submitted")
            assert daemon.state.queues["q"].items[item].vertex_job == job


async def test_events_for_an_execution_not_yet_known_wait_for_it(events: Bus) -> None:
    """An event that arrives before its execution is listed is buffered, then applied."""
    async with stand_ins(["q"], behaviour=lambda w, v: Hold()) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack, poll=0.2)) as (daemon, _url):
            await until(daemon.is_ready)
            from launch_supervisor.clients import build_clients

            clients = build_clients(daemon.config)
            execution = await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "outside", 60)
            await clients.aclose()
            bailout = {"event": "watchdog.bailout", "execution": short(execution), "queue": "q"}
            await events.publish({**bailout, "rule": "not_found", "category": "not_found"})
            await until(lambda: execution in daemon.state.queues["q"].executions, what="adopted by a listing")
            await until(lambda: daemon.state.queues["q"].executions[execution].category == "not_found")


async def test_the_emulator_restarting_mid_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the emulator, bring it back on the same port: the daemon resubscribes and hints work again."""
    require_emulator()
    (tmp_path / "one").mkdir()
    first = Emulator(tmp_path / "one")
    port = first.port
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", first.host)
        topic, subscription = make_topic(first.host, "restart")
        bus = Bus(topic, subscription)
        async with stand_ins(["q"]) as stack:
            stack.wandb.known_queues.add("q")
            async with running(bus.config(stack)) as (daemon, url):
                await until(daemon.is_ready)
                await anyio.sleep(1.0)
                await bus.publish({"event": "queue.item_added", "queue": "q"})
                await until_metric(
                    url, "launch_supervisor_pubsub_messages_total", 1, type="queue.item_added", result="applied"
                )
                first.stop()
                await anyio.sleep(2.0)
                (tmp_path / "two").mkdir()
                with running_emulator(tmp_path / "two", port=port) as second:
                    make_topic(second.host, "restart")
                    stack.wandb.enqueue(ENTITY, "q")
                    with anyio.fail_after(60):
                        while not executions_of(stack):
                            await Bus(topic, subscription).publish({"event": "queue.item_added", "queue": "q"})
                            await anyio.sleep(1.0)
    finally:
        first.stop()


async def test_shutdown_with_messages_in_flight_loses_none(events: Bus) -> None:
    """Stop the daemon while hints arrive: each is either handled (acked) or still in the subscription."""
    from google.cloud import pubsub_v1

    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack)) as (daemon, _url):
            await until(daemon.is_ready)
            await anyio.sleep(1.0)
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(events.publish, {"event": "queue.item_added", "queue": "q", "item_id": f"i{n}"})
            daemon.stop("test")
        handled = sum(
            daemon.metrics.pubsub_messages.labels("queue.item_added", result)._value.get()  # noqa: SLF001
            for result in ("applied", "duplicate")
        )
    subscriber = pubsub_v1.SubscriberClient()
    left = 0
    with anyio.fail_after(150):  # unhandled messages come back when their short lease expires
        while handled + left < 50:
            response = await anyio.to_thread.run_sync(
                lambda: subscriber.pull(subscription=events.subscription, max_messages=50, timeout=15)
            )
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=events.subscription, ack_ids=[m.ack_id for m in response.received_messages]
                )
            left += len(response.received_messages)
    subscriber.close()
    assert handled + left >= 50


async def test_a_real_watchdog_publishes_and_the_daemon_learns_the_category(events: Bus, tmp_path: Path) -> None:
    """End to end: each execution runs the real launch-watchdog, which publishes to the emulator; a
    permission bailout reaches the daemon's breaker as `permission` and opens it at once."""
    item_ids: list[str] = []

    def argv(handle: ExecutionHandle) -> list[str]:
        script = tmp_path / f"{short(handle.name)}.json"
        steps = [
            {"err": agent_lines.payload(item_ids[0])},
            {"err": agent_lines.job_error_traceback("google.api_core.exceptions.PermissionDenied: 403 denied")},
        ]
        script.write_text(json.dumps({"steps": steps}))
        return [
            "launch-watchdog",
            "--grace",
            "2",
            "--events-topic",
            events.topic,
            "--",
            sys.executable,
            str(AGENT),
            str(script),
            *handle.args,
        ]

    launcher = ProcessLauncher(argv, env={"WANDB_DIR": str(tmp_path)}, log_dir=tmp_path / "logs")
    async with stand_ins(["q"], behaviour=lambda w, v: launcher) as stack:
        item_ids.append(stack.wandb.enqueue(ENTITY, "q"))
        async with running(events.config(stack, "max_inflight = 1", poll=0.2)) as (daemon, url):
            await until(lambda: daemon.state.queues["q"].breaker.state.value == "open", timeout=30, what="breaker open")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_bailouts_total", queue="q", category="permission") == 1
            assert (
                metric(text, "launch_supervisor_pubsub_messages_total", type="watchdog.claimed", result="applied") == 1
            )
            record = next(iter(daemon.state.queues["q"].executions.values()))
            assert (record.bailout_rule, record.item_id) == ("permission_denied", item_ids[0])


async def test_notify_command_wakes_a_running_daemon(events: Bus, pubsub_emulator: Emulator) -> None:
    """`launch-supervisor notify` publishes queue.item_added; the daemon dispatches on it."""
    import os

    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with running(events.config(stack)) as (daemon, _url):
            await until(daemon.is_ready)
            await anyio.sleep(1.0)
            stack.wandb.enqueue(ENTITY, "q")
            env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_emulator.host}
            result = await anyio.run_process(
                ["launch-supervisor", "notify", "--topic", events.topic, "--queue", "q"], env=env, check=False
            )
            assert result.returncode == 0, result.stderr.decode()
            assert f"notified {events.topic}: queue.item_added for q" in result.stdout.decode()
            await until(lambda: len(executions_of(stack)) == 1, timeout=5, what="dispatch on notify")
            bad = await anyio.run_process(["launch-supervisor", "notify", "--topic", "t", "--queue", "q"], check=False)
            assert bad.returncode == 2
            assert "must look like projects/PROJECT/topics/TOPIC" in bad.stderr.decode()
