"""The daemon's configuration: a TOML file plus `LAUNCH_SUPERVISOR_…` environment overrides.

Validated into frozen pydantic models, so the rest of the daemon works with typed values. Every
error names the key, the bad value and what is allowed; an unknown key is an error with a "did you
mean" when a known one is close, because a misspelt `max_infligt` silently ignored would be worse
than no config at all.

Environment overrides address a key by its section: `LAUNCH_SUPERVISOR_WANDB__ENTITY=team`,
`LAUNCH_SUPERVISOR_HTTP__LISTEN=0.0.0.0:9464`. Values are read as TOML scalars when they parse as
one (`4`, `true`, `1.5`), else as strings. Per-queue settings come from the file only.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from netrc import NetrcParseError, netrc
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

DEFAULT_PATH = Path("/etc/launch-supervisor/config.toml")
ENV_PREFIX = "LAUNCH_SUPERVISOR_"

BUDGET_WINDOW = 86400.0
"""daily_budget counts the spend of this many seconds back (`launch_supervisor.model.cost.SPEND_WINDOW`); the
CustomJob listing must reach as far."""
_JOB = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/jobs/[^/\s]+")
_SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, each with its fix."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WandbConfig(_Section):
    """How to reach W&B."""

    entity: str = Field(min_length=1)
    """Entity whose queues are watched; a queue may name another."""
    base_url: str = "https://api.wandb.ai"
    """W&B server; the GraphQL endpoint is {base_url}/graphql."""
    api_key_file: Path | None = None
    """File holding the API key; else WANDB_API_KEY, else ~/.netrc for the base URL's host."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Resolved at load time; never printed."""
    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds for one GraphQL request."""
    max_item_pages: int = Field(default=10, ge=1, le=1000)
    """Most pages of 100 items one listing of a queue reads: a full page is followed by the next
    while W&B has more (README, W&B's listing order); beyond this, the rest is left unread."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL such as https://api.wandb.ai")
        return value.rstrip("/")


class GcpConfig(_Section):
    """Where the launcher jobs and Vertex AI jobs live."""

    project: str = Field(min_length=1)
    region: str = Field(min_length=1)
    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds for one Cloud Run or Vertex AI call (grpc deadline)."""
    vertex_lookback: float = Field(default=86400.0, gt=0)
    """How far back (seconds) Vertex jobs are listed on start and each tick."""
    run_endpoint: str | None = None
    """Cloud Run API host[:port]; default run.googleapis.com. A loopback address is reached
    without TLS or credentials (the sandbox)."""
    vertex_endpoint: str | None = None
    """Vertex AI API host[:port]; default {region}-aiplatform.googleapis.com. Loopback as above."""


class PollConfig(_Section):
    """How often each source is polled; Pub/Sub hints make a loop list early, at most once per its
    `*_min_gap`."""

    queue_interval: float = Field(default=5.0, gt=0)
    executions_interval: float = Field(default=10.0, gt=0)
    vertex_interval: float = Field(default=15.0, gt=0)
    jitter: float = Field(default=0.1, ge=0, le=0.5)
    """Each interval varies by up to this fraction, so many daemons do not poll in step."""
    queue_min_gap: float = Field(default=1.0, ge=0)
    """Least seconds between two listings of a queue's items that hints asked for: hints that arrive
    inside the gap share one listing. A second keeps dispatch within a second of an event and a flood
    of events to one GraphQL request a second per queue."""
    executions_min_gap: float = Field(default=1.0, ge=0)
    """The same floor for listing a launcher job's executions (one ListExecutions per gap at most)."""
    vertex_min_gap: float = Field(default=1.0, ge=0)
    """The same floor for the Vertex loop: a chatty event source costs at most one tick (two
    ListCustomJobs calls plus a GetCustomJob per job that ended) a second."""
    vertex_full_interval: float = Field(default=600.0, gt=0)
    """Seconds between listings of every CustomJob of the whole `gcp.vertex_lookback`, the safety net
    behind the ticks that list only the live and the newly created ones."""


class BreakerConfig(_Section):
    """When a queue stops dispatching because its executions keep bailing out."""

    threshold: int = Field(default=3, ge=1)
    """Bailouts of a counted category within `window` that open the breaker."""
    window: float = Field(default=600.0, gt=0)
    cooldown: float = Field(default=60.0, gt=0)
    """First wait before a half-open probe; doubles on each reopening."""
    max_cooldown: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _cooldowns(self) -> BreakerConfig:
        if self.max_cooldown < self.cooldown:
            raise ValueError(f"max_cooldown ({self.max_cooldown:g}) must be >= cooldown ({self.cooldown:g})")
        return self


class QueueConfig(_Section):
    """One W&B Launch queue and the Cloud Run job that serves it."""

    name: str = Field(min_length=1)
    launcher_job: str
    """Cloud Run job resource: projects/P/locations/R/jobs/J."""
    entity: str | None = None
    """Defaults to [wandb] entity."""
    max_inflight: int = Field(default=4, ge=1)
    """Executions of this queue running at once."""
    dispatch_budget: int = Field(default=30, ge=1)
    """Executions started per minute at most."""
    claim_timeout: float = Field(default=180.0, gt=0)
    """Seconds an execution may take to claim an item before it stops counting as about to."""
    execution_timeout: float = Field(default=1800.0, gt=0)
    """Task timeout set on each execution; the daemon also keeps its own clock."""
    stop_after_submit: float = Field(default=60.0, ge=0)
    """Seconds an execution may keep running after its CustomJob was created before the daemon cancels
    it: its watchdog should have stopped it at submission, and meanwhile it holds a max_inflight slot.
    Needs the execution's own `claimed` or `submitted` event (an inferred pairing may name another
    execution's item). 0 turns it off."""
    stranded_after: float | None = Field(default=None, gt=0)
    """Seconds an item may stay CLAIMED with no CustomJob and no execution holding it before the
    daemon fails it as lost (after searching Vertex AI for its run). Default: execution_timeout
    plus 600, so every execution that could still submit it has ended."""
    cancel_stopped_runs: bool = True
    """Cancel the Vertex AI CustomJob of a run stopped in W&B (the wandb agent's duty when it runs
    long-lived), then fail its item. Needs `aiplatform.customJobs.cancel` for the supervisor."""
    stop_grace: float = Field(default=60.0, ge=0)
    """Seconds a run stays stopped in W&B, its CustomJob still running, before the job is cancelled:
    time for the training code's own wandb client to end it first."""
    max_queued: float | None = Field(default=None, gt=0)
    """Seconds a CustomJob may stay QUEUED or PENDING (waiting for capacity) after its creation before
    the daemon cancels it and fails its item. Default: off (Vertex AI itself waits with no end)."""
    max_runtime: float | None = Field(default=None, gt=0)
    """Seconds a CustomJob may stay RUNNING before the daemon cancels it and fails its item. Default:
    off (the job's own `scheduling.timeout`, else Vertex AI's 7 days)."""
    daily_budget: float | None = Field(default=None, gt=0)
    """Dollars: while the queue's CustomJobs cost this much or more over the last 24 hours (priced
    with `[prices]`), nothing new is dispatched. Jobs already running are not touched. Default: off."""
    breaker: BreakerConfig = BreakerConfig()

    @field_validator("launcher_job")
    @classmethod
    def _job(cls, value: str) -> str:
        if not _JOB.fullmatch(value):
            raise ValueError("must look like projects/PROJECT/locations/REGION/jobs/JOB")
        return value


class PubsubConfig(_Section):
    subscription: str | None = None
    """Subscription delivering events and hints; polling alone when unset."""

    @field_validator("subscription")
    @classmethod
    def _subscription(cls, value: str | None) -> str | None:
        if value is not None and not _SUBSCRIPTION.fullmatch(value):
            raise ValueError("must look like projects/PROJECT/subscriptions/NAME")
        return value


class HttpConfig(_Section):
    listen: str = "127.0.0.1:9464"
    """host:port for /metrics, /healthz, /readyz and /status."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, such as 127.0.0.1:9464")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    """auto: console on a terminal, JSON lines otherwise (journald)."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class RetentionConfig(_Section):
    """How long finished records stay in memory (and on /status)."""

    finished_seconds: float = Field(default=3600.0, gt=0)
    finished_max: int = Field(default=1000, ge=1)


Price = Annotated[float, Field(ge=0)]


class PricesConfig(_Section):
    """What the daemon counts a CustomJob and a launcher execution as costing (README, Cost). Dollars
    per hour per replica by machine type and per accelerator by accelerator type, each with a spot
    variant for jobs scheduled with the SPOT strategy; Cloud Run's per-second prices for the launcher.
    A machine or accelerator type missing here is counted as unpriced, never guessed."""

    source: str = ""
    """Where and when the figures were read (shown nowhere; for the people who update them)."""
    machine: dict[str, Price] = {}
    """Machine type (n1-standard-8) → dollars per hour on demand."""
    machine_spot: dict[str, Price] = {}
    """Machine type → dollars per hour as a spot VM."""
    accelerator: dict[str, Price] = {}
    """Accelerator type as Vertex AI names it (NVIDIA_L4) → dollars per hour per accelerator."""
    accelerator_spot: dict[str, Price] = {}
    launcher_vcpu_second: Price = 0.0
    """Cloud Run jobs: dollars per vCPU-second."""
    launcher_gib_second: Price = 0.0
    """Cloud Run jobs: dollars per GiB-second of memory."""

    @property
    def empty(self) -> bool:
        return not (self.machine or self.machine_spot)


class Config(_Section):
    """The whole daemon configuration."""

    wandb: WandbConfig
    gcp: GcpConfig
    queues: list[QueueConfig] = Field(min_length=1)
    poll: PollConfig = PollConfig()
    pubsub: PubsubConfig = PubsubConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    retention: RetentionConfig = RetentionConfig()
    prices: PricesConfig = PricesConfig()

    @model_validator(mode="after")
    def _budgets_priced(self) -> Config:
        budgeted = [q.name for q in self.queues if q.daily_budget is not None]
        if budgeted and self.prices.empty:
            raise ValueError(
                f"queues {', '.join(budgeted)} set daily_budget, but [prices] names no machine type, so every "
                "job would cost nothing; add a [prices] table (README, Cost) or remove daily_budget"
            )
        if budgeted and self.gcp.vertex_lookback < BUDGET_WINDOW:
            raise ValueError(
                f"queues {', '.join(budgeted)} set daily_budget, but gcp.vertex_lookback "
                f"({self.gcp.vertex_lookback:g} s) lists less than the budget's {BUDGET_WINDOW:g} s: "
                f"raise vertex_lookback to at least {BUDGET_WINDOW:g}"
            )
        return self

    @model_validator(mode="after")
    def _unique_queues(self) -> Config:
        names: set[str] = set()
        jobs: dict[str, str] = {}
        for queue in self.queues:
            if queue.name in names:
                raise ValueError(f"queue {queue.name!r} is listed twice; queue names must be unique")
            names.add(queue.name)
            if queue.launcher_job in jobs:
                raise ValueError(
                    f"queues {jobs[queue.launcher_job]!r} and {queue.name!r} share launcher_job {queue.launcher_job}; "
                    "give each queue its own Cloud Run job, so executions found on restart belong to one queue"
                )
            jobs[queue.launcher_job] = queue.name
        return self

    def entity_of(self, queue: QueueConfig) -> str:
        return queue.entity or self.wandb.entity

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets masked."""
        data = self.model_dump(mode="json")
        data["wandb"]["api_key"] = "********" if self.wandb.api_key else None
        return data


# -- loading -----------------------------------------------------------------------------------


def _scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Overlay LAUNCH_SUPERVISOR_SECTION__KEY variables; returns problems with their names."""
    problems = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] == "queues":
            problems.append(f"{name}: queues are configured in the file only")
            continue
        target = data
        for part in path[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                problems.append(f"{name}: {part} is not a section")
                break
            target = nested
        else:
            target[path[-1]] = _scalar(raw)
    return problems


def _allowed(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc` (for "did you mean")."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields)


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        allowed = [a for a in _allowed(Config, loc) if a != "api_key"]
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"unknown key `{key}`{hint} (allowed here: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"`{key}` is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and not isinstance(error["input"], dict | list):
        return f"`{key}` = {error['input']!r}: {message}"
    return f"`{key}`: {message}" if key else message


def _resolve_api_key(data: dict[str, Any], environ: Mapping[str, str], home: Path) -> str | None:
    wandb = data.get("wandb") if isinstance(data.get("wandb"), dict) else None
    if wandb is None:
        return None
    key_file = wandb.get("api_key_file")
    if key_file:
        try:
            return Path(key_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError("wandb.api_key_file", [f"cannot read {key_file}: {exc.strerror}"]) from exc
    if environ.get("WANDB_API_KEY"):
        return environ["WANDB_API_KEY"]
    host = urlparse(str(wandb.get("base_url", "https://api.wandb.ai"))).hostname
    try:
        auth = netrc(str(home / ".netrc")).authenticators(host or "") if (home / ".netrc").exists() else None
    except (NetrcParseError, OSError):
        return None
    return auth[2] if auth and auth[2] else None


def parse_config(
    text: str,
    source: str,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Config:
    """Validate TOML text plus the environment into a Config, or raise ConfigError with every problem."""
    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    problems = _apply_env(data, environ)
    api_key = _resolve_api_key(data, environ, home or Path.home())
    if isinstance(data.get("wandb"), dict) and "api_key" in data["wandb"]:
        problems.append("`wandb.api_key`: do not put the key in the file; use api_key_file or WANDB_API_KEY")
        del data["wandb"]["api_key"]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems + [_describe(e) for e in exc.errors()]) from exc
    if problems:
        raise ConfigError(source, problems)
    if api_key is None:
        raise ConfigError(
            source,
            [
                "no W&B API key: set WANDB_API_KEY, or wandb.api_key_file, "
                f"or a ~/.netrc entry for {urlparse(config.wandb.base_url).hostname}"
            ],
        )
    wandb = config.wandb.model_copy(update={"api_key": SecretStr(api_key)})
    return config.model_copy(update={"wandb": wandb})


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file ({exc.strerror}); pass --config PATH"]) from exc
    return parse_config(text, str(path), environ)


def exposure(path: Path, config: Config) -> list[str]:
    """Warnings for files others on this machine can read: the key file (anyone but its owner) and
    the config file (anyone at all: it names the project, the queues, the key file). Not errors: the
    daemon still starts, but the operator should know."""
    warnings = []
    checks = [(path, 0o004, "the config file", "chmod o-rwx")]
    if config.wandb.api_key_file is not None:
        checks.append((config.wandb.api_key_file, 0o077, "the W&B API key file", "chmod 600"))
    for file, mask, what, fix in checks:
        try:
            mode = file.stat().st_mode
        except OSError:
            continue
        if mode & mask:
            warnings.append(f"{what} {file} can be read by others (mode {mode & 0o777:03o}); run: {fix} {file}")
    return warnings
