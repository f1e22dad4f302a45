"""The `flowkit` command: parse, call the library, report. No logic of its own lives here.

`app` holds the group and what commands share; each `*_commands` module adds one area's commands.
"""

from flowkit.cli import (
    extract_commands,
    features_commands,
    flow_commands,
    predict_commands,
    store_commands,
    train_commands,
)
from flowkit.cli.app import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, cli

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "cli", "extract_commands",
           "features_commands", "flow_commands", "main", "predict_commands", "store_commands", "train_commands"]


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="flowkit")
