"""deploy/vm/install.sh into a throwaway root, twice, with stubs for apt-get, useradd, systemctl, pip
and chown: files, modes, owners, the credential drop-in, and no change on the second run."""

from __future__ import annotations

import configparser
import json
import stat
import subprocess
from pathlib import Path

from tests.deploy import fakes

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "vm" / "install.sh"
MUTATING = {"apt-get", "groupadd", "useradd", "chown", "python3", "pip"}
SYSTEMCTL_MUTATING = {"enable", "start", "restart", "daemon-reload"}


def install(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = fakes.install(tmp_path / "bin", tmp_path / "state")
    argv = ["bash", str(INSTALL), "--root", str(tmp_path / "root"), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, env=env)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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
    key = etc / "credentials" / "wandb-key"
    assert key.read_text() == "k3y"
    assert (mode(key), owner(key)) == (0o600, "root:root")
    assert (mode(key.parent), owner(key.parent)) == (0o700, "root:root")

    units = root / "etc" / "systemd" / "system"
    unit = (ROOT / "deploy" / "systemd" / "launch-supervisor.service").read_text()
    assert (units / "launch-supervisor.service").read_text() == unit
    dropin = configparser.ConfigParser(strict=False, interpolation=None)
    dropin.optionxform = str  # type: ignore[assignment,method-assign]
    dropin.read(units / "launch-supervisor.service.d" / "wandb-key.conf")
    if "LoadCredential=wandb-key:" not in unit:
        assert dropin["Service"]["LoadCredential"] == "wandb-key:/etc/launch-supervisor/credentials/wandb-key"
    assert dropin["Service"]["Environment"] == "LAUNCH_SUPERVISOR_WANDB__API_KEY_FILE=%d/wandb-key"

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
    assert (tmp_path / "root" / "etc" / "launch-supervisor" / "credentials" / "wandb-key").read_text() == "new"
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
