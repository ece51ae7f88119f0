"""Normalized query fingerprints: the query part of a result-cache key.

A query is parsed with sqlglot (DuckDB dialect), its identifiers are folded to lower
case (DuckDB identifiers are case-insensitive, quoted or not), constant expressions are
folded and predicates put in a canonical order (``sqlglot.optimizer.simplify``), and
the tree is printed back as canonical SQL. The fingerprint is the SHA-256 of that text.
So whitespace, keyword case, identifier case and ``1 + 1`` vs ``2`` do not split cache
entries, while anything that can change the rows (a different literal, column, table,
operator, ORDER BY or LIMIT) gives a different text and a different fingerprint.

Output column *names* may still differ between equivalent spellings (DuckDB names
``sum(X)`` after the text as written); the cache stores rows once and asks DuckDB for
the names of a new spelling (see ``daemon.query.cached``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from daemon.query.lazysqlglot import exp, optimizer, sqlglot
from daemon.query.sandbox import QueryRejected, validate_query

DIALECT = "duckdb"


@dataclass(frozen=True)
class Fingerprint:
    """A query's fingerprint (hex SHA-256) and the canonical SQL it hashes."""

    digest: str
    normalized: str
    folded: bool = False  # constant folding made the query smaller
    nested: bool = False  # it has subqueries, CTEs or set operations


MEMO_SIZE = 4096
_memo: OrderedDict[str, Fingerprint] = OrderedDict()
_memo_lock = threading.Lock()


def known_fingerprint(sql: str) -> Fingerprint | None:
    """The fingerprint of a text fingerprinted before (cheap: no parsing), or None."""
    with _memo_lock:
        return _memo.get(sql)


def fingerprint(sql: str) -> Fingerprint:
    """Validate ``sql`` (read-only sandbox rules) and fingerprint it (memoized by text).

    Raises QueryRejected when the query is not allowed or cannot be parsed.
    """
    found = known_fingerprint(sql)
    if found is not None:
        return found
    found = fingerprint_tree(validate_query(sql))
    with _memo_lock:
        _memo[sql] = found
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return found


def fingerprint_tree(tree: exp.Expression) -> Fingerprint:
    """The fingerprint of an already parsed (and validated) query."""
    text, folded = canonical_sql(tree)
    nested = any(s is not tree for s in tree.find_all(exp.Select)) or not isinstance(
        tree, exp.Select
    )
    return Fingerprint(hashlib.sha256(text.encode()).hexdigest(), text, folded, nested)


def canonical_sql(tree: exp.Expression) -> tuple[str, bool]:
    """The canonical text of a query (folded identifiers and constants, one spelling),
    and whether folding constants made it smaller."""
    try:
        tree = optimizer("normalize_identifiers")(tree.copy(), dialect=DIALECT)
        before = sum(1 for _ in tree.walk())
        tree = optimizer("simplify")(tree, dialect=DIALECT)
        folded = sum(1 for _ in tree.walk()) < before
        return tree.sql(dialect=DIALECT, normalize=True, pretty=False, identify=True), folded
    except (sqlglot.errors.SqlglotError, RecursionError) as exc:
        raise QueryRejected(f"cannot normalize query: {str(exc).splitlines()[0]}") from exc
