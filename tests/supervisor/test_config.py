"""Configuration: the minimal file, defaults, overrides, and errors that name key, value and fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch_supervisor.config import ConfigError, exposure, parse_config

MINIMAL = """
[wandb]
entity = "team-ml"

[gcp]
project = "arr-coc"
region = "us-central1"

[[queues]]
name = "vertex-ai-queue"
launcher_job = "projects/arr-coc/locations/us-central1/jobs/vertex-ai-launcher"
max_inflight = 4
"""
KEY = {"WANDB_API_KEY": "0123456789abcdef"}
BIN = f"{Path(sys.executable).parent}:/usr/bin:/bin"


def problems(text: str, environ: dict[str, str] | None = None, home: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml", KEY if environ is None else environ, home)
    return info.value.problems


def test_the_minimal_file_is_valid_with_defaults() -> None:
    """The issue's minimal config loads; queue entity defaults to [wandb] entity."""
    config = parse_config(MINIMAL, "test.toml", KEY)
    queue = config.queues[0]
    assert config.entity_of(queue) == "team-ml"
    assert queue.max_inflight == 4
    assert queue.breaker.threshold == 3
    assert config.http.listen == "127.0.0.1:9464"
    assert config.wandb.base_url == "https://api.wandb.ai"
    assert config.wandb.api_key is not None
    assert config.wandb.api_key.get_secret_value() == KEY["WANDB_API_KEY"]


def test_unknown_keys_get_a_suggestion() -> None:
    """A misspelt key is an error with "did you mean" and the allowed keys."""
    found = problems(MINIMAL.replace("max_inflight = 4", "max_infligt = 4"))
    assert found == [
        "unknown key `queues[0].max_infligt`; did you mean `max_inflight`? (allowed here: name, launcher_job, "
        "entity, max_inflight, dispatch_budget, claim_timeout, execution_timeout, stop_after_submit, stranded_after, "
        "cancel_stopped_runs, stop_grace, max_queued, max_runtime, daily_budget, breaker)"
    ]
    assert "did you mean `entity`" in problems(MINIMAL.replace('entity = "team-ml"', 'entitty = "team-ml"'))[1]


def test_stop_after_submit_defaults_to_a_minute_and_zero_turns_it_off() -> None:
    """The backstop is on by default; 0 is allowed (off); a negative value is an error naming the key."""
    assert parse_config(MINIMAL, "test.toml", KEY).queues[0].stop_after_submit == 60.0
    off = parse_config(MINIMAL + "stop_after_submit = 0\n", "test.toml", KEY)
    assert off.queues[0].stop_after_submit == 0.0
    found = problems(MINIMAL + "stop_after_submit = -5\n")
    assert found == ["`queues[0].stop_after_submit` = -5: Input should be greater than or equal to 0"]


def test_every_problem_is_reported_with_key_and_value() -> None:
    """Bad values name the key, the value and what is allowed, all at once."""
    text = MINIMAL.replace("max_inflight = 4", "max_inflight = 0\nclaim_timeout = -1").replace(
        "jobs/vertex-ai-launcher", "vertex-ai-launcher"
    )
    text += '\n[http]\nlisten = "9464"\n[log]\nformat = "xml"\n'
    found = problems(text)
    assert any(
        p.startswith("`queues[0].launcher_job` = 'projects/arr-coc/locations/us-central1/vertex-ai") for p in found
    )
    assert "`queues[0].max_inflight` = 0: Input should be greater than or equal to 1" in found
    assert any(p.startswith("`queues[0].claim_timeout` = -1") for p in found)
    assert "`http.listen` = '9464': must be host:port, such as 127.0.0.1:9464" in found
    assert any(p.startswith("`log.format` = 'xml': Input should be 'auto', 'json' or 'console'") for p in found)


def test_environment_overrides() -> None:
    """LAUNCH_SUPERVISOR_SECTION__KEY overrides the file, typed as TOML scalars."""
    env = {**KEY, "LAUNCH_SUPERVISOR_HTTP__LISTEN": "0.0.0.0:9100", "LAUNCH_SUPERVISOR_POLL__QUEUE_INTERVAL": "2.5"}
    config = parse_config(MINIMAL, "test.toml", env)
    assert config.http.listen == "0.0.0.0:9100"
    assert config.poll.queue_interval == 2.5
    found = problems(MINIMAL, {**KEY, "LAUNCH_SUPERVISOR_QUEUES__NAME": "x"})
    assert found == ["LAUNCH_SUPERVISOR_QUEUES__NAME: queues are configured in the file only"]


def test_api_key_sources(tmp_path: Path) -> None:
    """The key comes from api_key_file, else WANDB_API_KEY, else ~/.netrc; never from the file itself."""
    key_file = tmp_path / "key"
    key_file.write_text("from-file-key\n")
    text = MINIMAL.replace('entity = "team-ml"', f'entity = "team-ml"\napi_key_file = "{key_file}"')
    assert parse_config(text, "t", {}).wandb.api_key.get_secret_value() == "from-file-key"  # type: ignore[union-attr]
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login user password netrc-key\n")
    assert parse_config(MINIMAL, "t", {}, tmp_path).wandb.api_key.get_secret_value() == "netrc-key"  # type: ignore[union-attr]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no W&B API key" in problems(MINIMAL, {}, empty)[0]
    inline = MINIMAL.replace('entity = "team-ml"', 'entity = "team-ml"\napi_key = "oops"')
    assert "do not put the key in the file" in problems(inline)[0]


def test_queues_must_not_share_names_or_launcher_jobs() -> None:
    """Two queues on one launcher job would make restart adoption ambiguous: an error."""
    twice = MINIMAL + MINIMAL[MINIMAL.index("[[queues]]") :].replace('name = "vertex-ai-queue"', 'name = "other"')
    assert "share launcher_job" in problems(twice)[0]
    same = MINIMAL + MINIMAL[MINIMAL.index("[[queues]]") :]
    assert "listed twice" in problems(same)[0]


@pytest.mark.slow  # starts `launch-supervisor check-config` processes
def test_check_config_command(tmp_path: Path) -> None:
    """check-config prints the effective config with the key masked, or every error and exit 2."""
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    result = subprocess.run(
        ["launch-supervisor", "check-config", str(good)],
        capture_output=True,
        text=True,
        env={"PATH": BIN, **KEY},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["wandb"]["api_key"] == "********"
    assert KEY["WANDB_API_KEY"] not in result.stdout
    assert shown["queues"][0]["entity"] is None
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("max_inflight = 4", "max_inflight = 'four'"))
    result = subprocess.run(
        ["launch-supervisor", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env={"PATH": BIN, **KEY},
        check=False,
    )
    assert result.returncode == 2
    assert "`queues[0].max_inflight` = 'four'" in result.stderr
    missing = subprocess.run(
        ["launch-supervisor", "check-config", str(tmp_path / "nope.toml")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2
    assert "cannot read the file" in missing.stderr


@pytest.mark.slow  # starts `launch-supervisor check-config` processes
def test_files_others_can_read_get_a_warning_naming_the_fix(tmp_path: Path) -> None:
    """A key file anyone but its owner can read, or a config file anyone can read: a warning with
    the chmod that fixes it; private files none. check-config prints it and still exits 0."""
    key_file = tmp_path / "key"
    key_file.write_text("from-file-key\n")
    config_file = tmp_path / "config.toml"
    config_file.write_text(MINIMAL.replace('entity = "team-ml"', f'entity = "team-ml"\napi_key_file = "{key_file}"'))
    key_file.chmod(0o600)
    config_file.chmod(0o640)
    config = parse_config(config_file.read_text(), str(config_file), {})
    assert exposure(config_file, config) == []
    key_file.chmod(0o640)
    config_file.chmod(0o644)
    warnings = exposure(config_file, config)
    assert warnings == [
        f"the config file {config_file} can be read by others (mode 644); run: chmod o-rwx {config_file}",
        f"the W&B API key file {key_file} can be read by others (mode 640); run: chmod 600 {key_file}",
    ]
    result = subprocess.run(
        ["launch-supervisor", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        env={"PATH": BIN},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: the W&B API key file {key_file} can be read by others" in result.stderr
    assert "from-file-key" not in result.stdout + result.stderr


def test_limits_and_budget_default_off_and_the_example_prices_load() -> None:
    """max_queued, max_runtime and daily_budget are off by default; the shipped example table parses."""
    from importlib import resources

    config = parse_config(MINIMAL, "test.toml", KEY)
    queue = config.queues[0]
    assert (queue.max_queued, queue.max_runtime, queue.daily_budget) == (None, None, None)
    assert config.prices.empty
    example = (resources.files("launch_supervisor.sandbox") / "prices-us-central1.toml").read_text()
    priced = parse_config(
        MINIMAL.replace("max_inflight = 4", "max_inflight = 4\ndaily_budget = 50") + example, "t", KEY
    )
    assert priced.prices.machine["n1-standard-4"] == 0.21849885
    assert priced.prices.launcher_vcpu_second == 0.000018
    assert priced.queues[0].daily_budget == 50


def test_a_budget_without_prices_or_a_day_of_listing_is_refused_with_the_fix() -> None:
    """A budget nothing can price, or a listing shorter than its day, is an error that says what to add."""
    budgeted = MINIMAL.replace("max_inflight = 4", "max_inflight = 4\ndaily_budget = 50")
    [problem] = problems(budgeted)
    assert "set daily_budget, but [prices] names no machine type" in problem
    assert "add a [prices] table" in problem
    short = budgeted.replace('region = "us-central1"', 'region = "us-central1"\nvertex_lookback = 3600')
    [problem] = problems(short + '\n[prices.machine]\n"n1-standard-4" = 0.2\n')
    assert "raise vertex_lookback to at least 86400" in problem


def test_a_negative_price_or_limit_names_its_key() -> None:
    """max_queued = 0 and a negative price are refused, each error naming its key."""
    found = problems(
        MINIMAL.replace("max_inflight = 4", "max_inflight = 4\nmax_queued = 0")
        + '\n[prices.machine]\n"n1-standard-4" = -1\n'
    )
    assert any("queues[0].max_queued" in p for p in found), found
    assert any("prices.machine.n1-standard-4" in p for p in found), found
