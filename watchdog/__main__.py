"""`python -m watchdog`, the same as `launch-watchdog`."""

import sys

from watchdog.cli import main

sys.exit(main())
