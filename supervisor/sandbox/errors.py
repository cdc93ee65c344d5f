"""What ends the sandbox with a message rather than a traceback: a start it cannot make.

Raised by every part of a session (the daemon, Pub/Sub, a missing program) and caught once by the
`sandbox` command, which prints the message and exits 1.
"""

from __future__ import annotations


class SandboxError(Exception):
    """The sandbox cannot start; the message says why and what to do."""
