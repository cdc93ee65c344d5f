"""deploy/vm/install.sh into a throwaway root, twice, with stubs for apt-get, useradd, systemctl, pip
and chown: files, modes, owners, the key where the unit loads it, and no change on the second run;
and deploy/vm/startup.sh, the VM's startup script, with a stand-in for the metadata server and
Secret Manager."""

from __future__ import annotations

import base64
import configparser
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import fakes

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "vm" / "install.sh"
STARTUP = ROOT / "deploy" / "vm" / "startup.sh"
UNIT = ROOT / "deploy" / "systemd" / "launch-supervisor.service"
DROPINS = Path("etc/systemd/system/launch-supervisor.service.d")
MUTATING = {"apt-get", "groupadd", "useradd", "chown", "python3", "pip"}
SYSTEMCTL_MUTATING = {"enable", "start", "restart", "daemon-reload"}


def install(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = fakes.install(tmp_path / "bin", tmp_path / "state")
    argv = ["bash", str(INSTALL), "--root", str(tmp_path / "root"), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, env=env)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def credential() -> tuple[str, str]:
    """The unit's LoadCredential=ID:PATH; install.sh's own drop-in's for a unit without one."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("LoadCredential="):
            name, _, path = line.removeprefix("LoadCredential=").partition(":")
            return name, path
    return "wandb-key", "/etc/launch-supervisor/credentials/wandb-key"


def service_section(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser["Service"]


def changes(state: Path) -> list[list[str]]:
    return [
        c
        for c in fakes.calls(state)
        if (c[0] in MUTATING and not (c[0] == "pip" and c[1] == "show"))
        or (c[0] == "systemctl" and SYSTEMCTL_MUTATING & set(c[1:]))
    ]


def test_installs_twice_and_the_second_run_changes_nothing(tmp_path: Path) -> None:
    """Config 0640 root:group, key 0600 root in a 0700 dir, unit and drop-in; nothing changes again."""
    config = tmp_path / "config.toml"
    config.write_text('[wandb]\nentity = "e"\n')
    first = install(tmp_path, "--config", str(config), "--wandb-key-stdin", "--with-prometheus", stdin="k3y\n")
    assert first.returncode == 0, first.stderr
    root, state = tmp_path / "root", tmp_path / "state"
    owners = json.loads((state / "state.json").read_text())["owners"]

    def owner(path: Path) -> str:
        return owners[str(path.resolve())]

    etc = root / "etc" / "launch-supervisor"
    assert (mode(etc), owner(etc)) == (0o750, "root:launch-supervisor")
    assert (etc / "config.toml").read_text() == config.read_text()
    assert (mode(etc / "config.toml"), owner(etc / "config.toml")) == (0o640, "root:launch-supervisor")
    # The key where the unit's LoadCredential= reads it, and wandb.api_key_file pointing at the copy.
    name, path = credential()
    key = root / path.lstrip("/")
    assert key.read_text() == "k3y"
    assert (mode(key), owner(key)) == (0o600, "root:root")
    if key.parent != etc:
        assert (mode(key.parent), owner(key.parent)) == (0o700, "root:root")
    assert (mode(etc), owner(etc)) == (0o750, "root:launch-supervisor")

    units = root / "etc" / "systemd" / "system"
    assert (units / "launch-supervisor.service").read_text() == UNIT.read_text()
    dropin = root / DROPINS / "wandb-key.conf"
    service_file = dropin if dropin.exists() else units / "launch-supervisor.service"
    assert service_section(service_file)["LoadCredential"] == f"{name}:{path}"
    assert f"Environment=LAUNCH_SUPERVISOR_WANDB__API_KEY_FILE=%d/{name}" in service_file.read_text().splitlines()
    assert dropin.exists() == ("LoadCredential=" not in UNIT.read_text())

    prometheus = root / "etc" / "prometheus"
    assert (prometheus / "alerts.yml").read_bytes() == (ROOT / "deploy" / "prometheus" / "alerts.yml").read_bytes()
    assert (mode(prometheus / "alertmanager.yml"), owner(prometheus / "alertmanager.yml")) == (0o640, "root:prometheus")
    assert "127.0.0.1:9090" in (root / "etc" / "default" / "prometheus").read_text()

    made = fakes.calls(state)
    assert ["useradd", "--system", "--gid", "launch-supervisor", "--home-dir", "/nonexistent", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "launch-supervisor"] in made  # fmt: skip
    assert any(c[0] == "apt-get" and "prometheus-alertmanager" in c for c in made)
    assert ["pip", "install", "--quiet", "--upgrade", "launch-supervisor[daemon]"] in made
    assert ["systemctl", "restart", "prometheus", "prometheus-alertmanager", "launch-supervisor.service"] in made
    assert (root / "opt" / "launch-supervisor" / "bin" / "pip").exists()

    (state / "calls").unlink()
    second = install(tmp_path, "--config", str(config), "--wandb-key-stdin", "--with-prometheus", stdin="k3y\n")
    assert second.returncode == 0, second.stderr
    assert changes(state) == []


def test_a_new_key_restarts_the_daemon_only(tmp_path: Path) -> None:
    """A changed key is written and restarts launch-supervisor; nothing else is touched."""
    config = tmp_path / "config.toml"
    config.write_text('[wandb]\nentity = "e"\n')
    assert install(tmp_path, "--config", str(config), "--wandb-key-stdin", stdin="old").returncode == 0
    (tmp_path / "state" / "calls").unlink()
    key_file = tmp_path / "key"
    key_file.write_text("new\n")
    result = install(tmp_path, "--wandb-key-file", str(key_file))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "root" / credential()[1].lstrip("/")).read_text() == "new"
    assert [c[:2] for c in changes(tmp_path / "state")] == [["chown", "root:root"], ["systemctl", "restart"]]


def test_first_run_needs_config_and_key(tmp_path: Path) -> None:
    """Without a config or a key on a fresh root it says which is missing and exits 2."""
    result = install(tmp_path, "--wandb-key-stdin", stdin="k")
    assert result.returncode == 2
    assert "--config FILE" in result.stderr
    config = tmp_path / "config.toml"
    config.write_text("")
    result = install(tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert "--wandb-key-file FILE or --wandb-key-stdin" in result.stderr


def test_http_listen_is_a_drop_in_kept_by_later_runs(tmp_path: Path) -> None:
    """--http-listen sets [http] listen over the config file; a run without it keeps it."""
    config = tmp_path / "config.toml"
    config.write_text('[wandb]\nentity = "e"\n')
    first = install(tmp_path, "--config", str(config), "--wandb-key-stdin", "--http-listen", "0.0.0.0:9464", stdin="k")
    assert first.returncode == 0, first.stderr
    dropin = tmp_path / "root" / DROPINS / "http-listen.conf"
    assert service_section(dropin)["Environment"] == "LAUNCH_SUPERVISOR_HTTP__LISTEN=0.0.0.0:9464"
    (tmp_path / "state" / "calls").unlink()
    again = install(tmp_path)
    assert again.returncode == 0, again.stderr
    assert changes(tmp_path / "state") == []
    assert dropin.exists()
    bad = install(tmp_path, "--http-listen", "9464")
    assert bad.returncode == 2
    assert "HOST:PORT" in bad.stderr


def test_an_old_key_drop_in_is_removed(tmp_path: Path) -> None:
    """A unit that loads the key itself does not keep the drop-in an earlier install.sh wrote."""
    config = tmp_path / "config.toml"
    config.write_text("")
    old = tmp_path / "root" / DROPINS / "wandb-key.conf"
    old.parent.mkdir(parents=True)
    old.write_text("[Service]\nLoadCredential=wandb-key:/etc/launch-supervisor/credentials/wandb-key\n")
    result = install(tmp_path, "--config", str(config), "--wandb-key-stdin", stdin="k")
    assert result.returncode == 0, result.stderr
    assert old.exists() == ("LoadCredential=" not in UNIT.read_text())
    assert ["systemctl", "daemon-reload"] in fakes.calls(tmp_path / "state")


# -- deploy/vm/startup.sh ---------------------------------------------------------------------------------

METADATA = "http://metadata.google.internal/computeMetadata/v1/"
SECRETS = "https://secretmanager.googleapis.com/v1/projects/p/secrets/"
# Cloud Storage's JSON API: GET /storage/v1/b/BUCKET/o/OBJECT?alt=media answers the object's bytes,
# the object name URL-encoded (https://cloud.google.com/storage/docs/json_api/v1/objects/get,
# https://cloud.google.com/storage/docs/request-endpoints#encoding).
OBJECTS = "https://storage.googleapis.com/storage/v1/b/p-launch-supervisor/o/"
WHEEL = "daemon/0123456789ab/launch_supervisor-0.1.0-py3-none-any.whl"
LOCK = "daemon/0123456789ab/requirements.lock"
TOKEN = "ya29.the-token"  # noqa: S105 - a stand-in token


def fake_curl(args: list[str]) -> int:
    """curl … URL against STATE/curl.json (URL: body): the metadata server wants its header, Secret
    Manager the token in a header read from a file (-H @FILE); anything else is a 404."""
    state = Path(os.environ["FAKE_STATE"])
    with (state / "calls").open("a") as log:
        log.write(json.dumps(["curl", *args]) + "\n")
    url = args[-1]
    headers = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-H"]
    headers = [Path(h[1:]).read_text().strip() if h.startswith("@") else h for h in headers]
    bodies: dict[str, str] = json.loads((state / "curl.json").read_text())
    allowed = (
        "Metadata-Flavor: Google" in headers
        if url.startswith(METADATA)
        else f"Authorization: Bearer {TOKEN}" in headers and any(a.startswith("@") for a in args)
    )
    if not allowed:
        print(f"curl: (22) The requested URL returned error: 401 ({url})", file=sys.stderr)
        return 22
    if url not in bodies:
        print(f"curl: (22) The requested URL returned error: 404 ({url})", file=sys.stderr)
        return 22
    sys.stdout.write(bodies[url])
    return 0


def secret_body(value: str) -> str:
    data = base64.b64encode(value.encode()).decode()
    return json.dumps(
        {"name": "projects/1/secrets/s/versions/1", "payload": {"data": data, "dataCrc32c": "42"}}, indent=2
    )


def startup(
    tmp_path: Path, config: str, key: str | None = "k3y\n", package: str | None = None, stored_wheel: str = "wheel"
) -> subprocess.CompletedProcess[str]:
    """startup.sh --root, with the metadata setup.sh gives it and the secrets wandb-api-key (`key`,
    unless None) and alertmanager-pagerduty-routing-key: the wheel and lock in the bucket (the wheel's
    bytes there `stored_wheel`, the template's sha256 that of "wheel"), or `package` instead."""
    env = fakes.install(tmp_path / "bin", tmp_path / "state")
    curl = tmp_path / "bin" / "curl"
    curl.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.append({str(ROOT)!r})\n"
        "from tests.deploy.test_vm_install import fake_curl\nsys.exit(fake_curl(sys.argv[1:]))\n"
    )
    curl.chmod(0o755)
    files = {
        "launch-supervisor-install": INSTALL,
        "launch-supervisor-unit": UNIT,
        "launch-supervisor-prometheus": ROOT / "deploy" / "prometheus" / "prometheus.yml",
        "launch-supervisor-alerts": ROOT / "deploy" / "prometheus" / "alerts.yml",
        "launch-supervisor-alertmanager": ROOT / "deploy" / "alertmanager" / "alertmanager.yml",
    }
    bodies = {f"{METADATA}instance/attributes/{key}": path.read_text() for key, path in files.items()}
    bodies |= {
        f"{METADATA}instance/attributes/launch-supervisor-config": config,
        f"{METADATA}instance/attributes/launch-supervisor-secret": "wandb-api-key",
        f"{METADATA}instance/attributes/launch-supervisor-http-listen": "0.0.0.0:9464",
        f"{METADATA}project/project-id": "p",
        f"{METADATA}instance/service-accounts/default/token": json.dumps({"access_token": TOKEN, "expires_in": 3599}),
        f"{SECRETS}alertmanager-pagerduty-routing-key/versions/latest:access": secret_body("r0ut1ng"),
    }
    if key is not None:
        bodies[f"{SECRETS}wandb-api-key/versions/latest:access"] = secret_body(key)
    if package is not None:
        bodies[f"{METADATA}instance/attributes/launch-supervisor-package"] = package
    else:
        for name, attribute, body, listed in (("wheel", WHEEL, stored_wheel, "wheel"), ("lock", LOCK, "lock", "lock")):
            digest = hashlib.sha256(listed.encode()).hexdigest()
            bodies[f"{METADATA}instance/attributes/launch-supervisor-{name}"] = (
                f"gs://p-launch-supervisor/{attribute} {digest}"
            )
            bodies[OBJECTS + attribute.replace("/", "%2F") + "?alt=media"] = body
    (tmp_path / "state" / "curl.json").write_text(json.dumps(bodies))
    argv = ["bash", str(STARTUP), "--root", str(tmp_path / "root")]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)


def test_the_startup_script_installs_from_metadata_and_secrets_twice(tmp_path: Path) -> None:
    """At a VM's first boot: install.sh with the config, package and deploy files from the metadata,
    the key from Secret Manager, /healthz on every address, Alertmanager's secrets that exist; at the
    next boot, nothing changes. No secret and no token is ever an argument."""
    config = '[wandb]\nentity = "e"\n'
    first = startup(tmp_path, config)
    assert first.returncode == 0, first.stdout + first.stderr
    root, state = tmp_path / "root", tmp_path / "state"
    owners = json.loads((state / "state.json").read_text())["owners"]
    deploy = root / "var" / "lib" / "launch-supervisor-deploy" / "deploy"
    assert (deploy / "vm" / "install.sh").read_text() == INSTALL.read_text()
    assert (deploy / "systemd" / "launch-supervisor.service").read_text() == UNIT.read_text()
    assert (root / "etc" / "launch-supervisor" / "config.toml").read_text() == config
    assert (root / credential()[1].lstrip("/")).read_text() == "k3y"
    listen = service_section(root / DROPINS / "http-listen.conf")["Environment"]
    assert listen == "LAUNCH_SUPERVISOR_HTTP__LISTEN=0.0.0.0:9464"

    secrets = root / "etc" / "prometheus" / "secrets"
    routing_key = secrets / "pagerduty-routing-key"
    assert routing_key.read_text() == "r0ut1ng"
    assert (mode(routing_key), owners[str(routing_key.resolve())]) == (0o640, "root:prometheus")
    assert sorted(p.name for p in secrets.iterdir()) == ["pagerduty-routing-key"]
    assert "no readable secret alertmanager-smtp-password" in first.stdout

    made = fakes.calls(state)
    (pip,) = [c for c in made if c[:2] == ["pip", "install"]]
    assert pip[2:6] == ["--quiet", "--require-hashes", "--no-deps", "-r"]
    assert any(c[0] == "apt-get" and "prometheus-alertmanager" in c for c in made)
    assert ["systemctl", "restart", "prometheus-alertmanager"] in made
    assert not any(s in arg for c in made for arg in c for s in ("k3y", TOKEN, "r0ut1ng"))

    (state / "calls").unlink()
    second = startup(tmp_path, config)
    assert second.returncode == 0, second.stdout + second.stderr
    assert changes(state) == []


def test_the_startup_script_refuses_a_wheel_the_template_does_not_name(tmp_path: Path) -> None:
    """A wheel in the bucket whose sha256 is not the template's stops the script before install.sh."""
    result = startup(tmp_path, "", stored_wheel="another wheel")
    assert result.returncode == 1
    assert "launch_supervisor-0.1.0-py3-none-any.whl is not the file this VM's template names" in result.stderr
    assert not (tmp_path / "root" / "etc").exists()
    assert not any(c[0] in ("pip", "apt-get", "useradd") for c in fakes.calls(tmp_path / "state"))


def test_the_startup_script_installs_a_package_given_instead(tmp_path: Path) -> None:
    """setup.sh --package: the VM pip-installs that requirement, as it is."""
    result = startup(tmp_path, '[wandb]\nentity = "e"\n', package="launch-supervisor[daemon]==0.1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    made = fakes.calls(tmp_path / "state")
    assert ["pip", "install", "--quiet", "--upgrade", "launch-supervisor[daemon]==0.1.0"] in made
    assert not any("storage.googleapis.com" in arg for c in made for arg in c)


def test_the_startup_script_stops_without_the_key(tmp_path: Path) -> None:
    """A key the VM cannot read stops the script before install.sh (the group recreates the VM)."""
    result = startup(tmp_path, "", key=None)
    assert result.returncode == 1
    assert "cannot read secret wandb-api-key" in result.stderr
    assert not (tmp_path / "root" / "etc").exists()
    assert not any(c[0] in ("pip", "apt-get", "useradd") for c in fakes.calls(tmp_path / "state"))


# -- the daemon's wheel and lock, hash-checked by the real pip in a real venv ---------------------------

BUILD_WHEEL = ROOT / "deploy" / "gcp" / "build-wheel.sh"


def offline_pip(env: dict[str, str], wheelhouse: Path) -> dict[str, str]:
    """pip with no index and no config but `wheelhouse`, building with this environment's setuptools."""
    return env | {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads 0 here as --no-build-isolation
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHON": sys.executable,  # the real interpreter makes the venv; the rest are stubs
    }


def locked_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """This checkout's wheel, built as setup.sh builds it, and a lock of one local package.

    Tests have no package index: the lock's package is a wheel made here, and the lock is written as
    `uv pip compile --generate-hashes` writes one (deploy/vm/requirements.lock)."""
    wheelhouse = tmp_path / "wheelhouse"
    env = offline_pip(dict(os.environ), wheelhouse)
    built = subprocess.run(["bash", str(BUILD_WHEEL), str(tmp_path / "dist")], env=env, capture_output=True,
                           text=True, check=True)  # fmt: skip
    wheel = Path(built.stdout.strip())
    project = tmp_path / "tinydep"
    (project / "tinydep").mkdir(parents=True)
    (project / "tinydep" / "__init__.py").write_text('"""A dependency for the lock."""\n')
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinydep"\nversion = "1.0"\n'
    )
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse), str(project)]
    subprocess.run(pip, env=env, check=True, capture_output=True)
    (dep,) = wheelhouse.glob("tinydep-*.whl")
    digest = hashlib.sha256(dep.read_bytes()).hexdigest()
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"tinydep==1.0 \\\n    --hash=sha256:{digest}\n    # via launch-supervisor (pyproject.toml)\n")
    return wheel, lock, wheelhouse


def install_locked(tmp_path: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = offline_pip(fakes.install(tmp_path / "bin", tmp_path / "state"), tmp_path / "wheelhouse")
    argv = ["bash", str(INSTALL), "--root", str(root), *args]
    return subprocess.run(argv, input="k3y", capture_output=True, text=True, check=False, env=env)


def site_packages(root: Path) -> set[str]:
    (site,) = (root / "opt" / "launch-supervisor" / "lib").glob("python3*/site-packages")
    return {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}


@pytest.mark.slow
def test_installs_the_wheel_and_lock_with_their_hashes_and_refuses_a_changed_one(tmp_path: Path) -> None:
    """--wheel and --lock: pip --require-hashes installs exactly them into the venv, once; a lock with
    one hash changed stops install.sh with a clear error before anything is installed."""
    wheel, lock, _ = locked_pair(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('[wandb]\nentity = "e"\n')
    args = ("--config", str(config), "--wandb-key-stdin", "--wheel", str(wheel), "--lock", str(lock))

    good = tmp_path / "good"
    first = install_locked(tmp_path, good, *args)
    assert first.returncode == 0, first.stderr
    assert {"launch_supervisor", "tinydep"} <= site_packages(good)
    venv_bin = good / "opt" / "launch-supervisor" / "bin"
    ran = subprocess.run([str(venv_bin / "launch-watchdog"), "--help"], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    stamp = good / "opt" / "launch-supervisor" / "launch-supervisor.installed"
    assert wheel.name in stamp.read_text()

    # The same pair again: pip is not run, nothing restarts.
    (tmp_path / "state" / "calls").unlink()
    before = stamp.stat().st_mtime_ns
    again = install_locked(tmp_path, good, *args)
    assert again.returncode == 0, again.stderr
    assert stamp.stat().st_mtime_ns == before
    assert changes(tmp_path / "state") == []

    # One hash of the lock changed: pip refuses, install.sh says what to do, nothing is installed.
    text = lock.read_text()
    digest = text.split("sha256:")[1][:64]
    tampered = tmp_path / "tampered.lock"
    tampered.write_text(text.replace(digest, ("0" if digest[0] != "0" else "1") + digest[1:]))
    bad = tmp_path / "bad"
    refused = install_locked(tmp_path, bad, *args[:-1], str(tampered))
    assert refused.returncode == 1
    assert "DO NOT MATCH THE HASHES" in refused.stderr
    assert "install.sh: pip installed nothing" in refused.stderr
    assert "refresh the lock" in refused.stderr
    assert site_packages(bad) & {"launch_supervisor", "tinydep"} == set()
    assert not (bad / "opt" / "launch-supervisor" / "launch-supervisor.installed").exists()
    assert not (bad / "etc" / "systemd" / "system" / "launch-supervisor.service").exists()


def test_a_wheel_needs_its_lock(tmp_path: Path) -> None:
    """--wheel without --lock, or a file that is not a wheel, is refused before anything is done."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("")
    alone = install(tmp_path, "--wheel", str(lock))
    assert alone.returncode == 2
    assert "--wheel and --lock go together" in alone.stderr
    not_a_wheel = install(tmp_path, "--wheel", str(lock), "--lock", str(lock))
    assert not_a_wheel.returncode == 2
    assert "is not a wheel" in not_a_wheel.stderr
    assert fakes.calls(tmp_path / "state") == []


def test_the_wheel_is_built_with_a_pinned_setuptools_the_project_accepts() -> None:
    """build-wheel.sh pins its build backend exactly (the wheel names it, so a new release would roll
    the VM), at a version pyproject.toml's build-system accepts."""
    import tomllib

    from packaging.requirements import Requirement

    constraints = (ROOT / "deploy" / "gcp" / "build-constraints.txt").read_text().splitlines()
    (pin,) = [Requirement(line) for line in constraints if line and not line.startswith("#")]
    assert pin.name == "setuptools"
    (spec,) = pin.specifier
    assert spec.operator == "=="
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    (wanted,) = [Requirement(r) for r in build_system["requires"] if Requirement(r).name == "setuptools"]
    assert wanted.specifier.contains(spec.version)
    assert "build-constraints.txt" in BUILD_WHEEL.read_text()
