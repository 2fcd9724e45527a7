"""Exceptions raised by the ``protocol`` package.

Callers catch these instead of whatever the JSON parser, the CloudEvents SDK, protobuf or gmqtt raises, so a
malformed message from a broker can never crash a consumer loop with an unexpected exception type::

    MaestroProtocolException
    ├── ProtocolError            malformed or unacceptable wire input (also a ValueError)
    │   └── PayloadTooLargeError an encoded event over the configured size limit
    ├── ConfigError              an invalid MQTT config file (also a ValueError)
    └── BrokerError              the MQTT adapter could not do what was asked
        ├── ConnectError         connecting (or reconnecting) failed, or was refused
        ├── SubscribeError       the broker refused a subscription
        ├── PublishTimeoutError  a publish waited too long (in-flight window full, or disconnected)
        │   └── NotConnectedError publishing while disconnected for longer than the timeout
        └── BrokerClosedError    the adapter was used after (or during) shutdown
"""

from __future__ import annotations


class MaestroProtocolException(Exception):
    """Base class of every exception raised on purpose by ``protocol``."""


class ProtocolError(MaestroProtocolException, ValueError):
    """Wire input that cannot be decoded or violates the protocol.

    It subclasses ``ValueError`` so that generic validation code that already catches ``ValueError`` keeps
    working.
    """


class PayloadTooLargeError(ProtocolError):
    """An encoded message is larger than the broker (or our own limit) accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"encoded message is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ConfigError(MaestroProtocolException, ValueError):
    """An invalid configuration value; ``field`` names the offending key as written in the file."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BrokerError(MaestroProtocolException):
    """Base class for failures of the MQTT adapter."""


class ConnectError(BrokerError):
    """Connecting to the broker failed; ``permanent`` is true when retrying cannot help (bad
    credentials...)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SubscribeError(BrokerError):
    """The broker refused (or never acknowledged) a subscription."""


class PublishTimeoutError(BrokerError):
    """A publish could not be handed to the broker within its timeout."""


class NotConnectedError(PublishTimeoutError):
    """A publish waited longer than its timeout for the connection to come back."""


class BrokerClosedError(BrokerError):
    """The adapter has been closed; nothing can be published or received any more."""
