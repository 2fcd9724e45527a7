"""What a command can fail with: each is one line on stderr and exit code 1 (argparse's usage errors are 2).

::

    CLIError                 anything the user should read; the message is the whole line
    ├── APIError             the hub answered with an error body: ``reason`` is what it said
    ├── UnreachableError     no answer: connection refused, DNS, TLS, timeout, a dropped connection
    └── WaitError            ``--wait`` ended without success (a timeout, or a failing condition)
"""

from __future__ import annotations


class CLIError(Exception):
    """An error whose message is meant for the person at the terminal (no traceback)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # NB: one line, whatever the server or the OS said.

    @property
    def message(self) -> str:
        return str(self.args[0])


class APIError(CLIError):
    """A REST error: ``status`` is the HTTP status, ``code`` upstream's error code (``maestro-7``) if any."""

    def __init__(self, reason: str, *, status: int, code: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


class UnreachableError(CLIError):
    """The hub did not answer."""


class WaitError(CLIError):
    """``--wait`` gave up: the message names the failing condition and its message."""
