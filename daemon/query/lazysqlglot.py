"""sqlglot, imported on first use (:mod:`daemon.store.lazy`).

sqlglot is 50 modules and 9 MB of RSS (measured on an empty daemon), and a daemon that
answers no query parses no SQL. Modules that parse SQL import ``sqlglot`` and ``exp``
from here; the real package loads the first time one of their attributes is read.
Module-level constants built from sqlglot's classes are functions for the same reason
(``_forbidden_nodes`` in :mod:`daemon.query.sandbox`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from daemon.store.lazy import lazy_module

if TYPE_CHECKING:
    import sqlglot
    from sqlglot import exp
else:
    sqlglot = lazy_module("sqlglot")
    exp = lazy_module("sqlglot.expressions")


def optimizer(rule: str) -> Any:
    """The function ``sqlglot.optimizer.<rule>.<rule>`` (simplify, qualify, ...)."""
    return getattr(importlib.import_module(f"sqlglot.optimizer.{rule}"), rule)


__all__ = ["exp", "optimizer", "sqlglot"]
