"""Start-up code for the agent's own Python, not for the watchdog.

launch-watchdog puts this directory first on the agent's PYTHONPATH so that Python runs the
`sitecustomize` module here when the agent starts. The watchdog never imports that module itself;
this file only lets the directory ship as part of the package and be found.
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
"""What goes first on the agent's PYTHONPATH."""
