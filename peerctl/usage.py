"""Usage errors: a bad argument is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(Exception):
    """A bad argument; printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors instead of usage dumps."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
