"""`python -m launch_watchdog`, the same as `launch-watchdog`."""

import sys

from launch_watchdog.cli import main

sys.exit(main())
