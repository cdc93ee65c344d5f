"""shellcheck for the tests of the deploy scripts: skipped where missing, a failure under CI."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "needs shellcheck: apt-get install -y shellcheck"


def require_shellcheck() -> str:
    """The path of shellcheck; skip without it, except under CI (`CI=true`), where that fails."""
    found = shutil.which("shellcheck")
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(INSTALL_HINT)
    pytest.skip(INSTALL_HINT)
