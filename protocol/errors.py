"""Exceptions shared by the protocol modules."""


class ProtocolError(Exception):
    """Base class: something violated the duckpeer protocol."""


class RemoteProtocolError(ProtocolError):
    """The bytes or message we received are malformed, oversize or inconsistent."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow."""
