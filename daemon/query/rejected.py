"""The one error every query check raises."""

from __future__ import annotations


class QueryRejected(ValueError):
    """The query is not a read-only SELECT over our tables, or could exceed a limit."""
