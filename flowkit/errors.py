"""Errors a user can act on: each carries a one-line message the CLI prints without a traceback."""


class FlowkitError(Exception):
    """Bad input or a state the user must resolve; the message is complete on its own."""


class VideoError(FlowkitError):
    """One video cannot be decoded into enough frames; extraction records it and goes on."""


class StoreError(FlowkitError):
    """An output file or folder that flowkit cannot read or must not write."""
