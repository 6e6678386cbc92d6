"""Domain exceptions. They are converted to messages only at the edges (CLI, HTTP)."""


class MeterFoxError(Exception):
    """Base class: the message is written for the user and says what to do next."""


class ConfigError(MeterFoxError):
    pass


class StoreError(MeterFoxError):
    pass


class KeyError_(MeterFoxError):
    """A key operation failed (named with a trailing underscore to keep the builtin usable)."""
