"""The fault suite's fixtures: a scenario's figures go to the table (`tests/faults/figures.py`), and
nothing a scenario printed may hold the W&B key it ran with."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from tests.faults import figures
from tests.faults.harness import SECRETS, Figures


@pytest.fixture
def record() -> Callable[[Figures], None]:
    """Keep a scenario's figures for the table."""
    return figures.rows.append


@pytest.fixture(autouse=True)
def no_secret_in_any_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Everything a scenario printed (the daemon's log lines, /status, the stand-ins) is free of
    the W&B key it ran with."""
    yield
    out, err = capfd.readouterr()
    sys.stdout.write(out)
    sys.stderr.write(err)
    leaked = sorted(s for s in SECRETS if s in out or s in err)
    assert not leaked, f"a W&B key appeared in the output ({len(leaked)} of {len(SECRETS)} keys)"
