"""An upper bound on the size of every value a bound plan can build.

DuckDB accounts for hash tables, sorts and materialized results against its
``memory_limit``, but not for the strings a projection computes: one vector of 2,048
rows, each ``concat(model_id, c, c, ...)`` of a 50 KB constant ``c``, went past 5 GB
under a 1 GB limit, and no interrupt stops a vector half-way. So the bound is static:
every expression's size is tracked as a :class:`Size`, a multiple of the largest
stored value (``base``), a multiple of an accumulated aggregate (``agg``: a
``string_agg`` or ``list``, whose state DuckDB does account for) and constant bytes
(``const``), and a plan that could go over :data:`LIMITS` is refused. Columns are not
told apart: a reference counts as the largest value its input operator can hold,
which is exact for the doubling attacks and loose only for odd queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from daemon.query.functions import words
from daemon.query.rejected import QueryRejected

Node = dict[str, Any]


@dataclass(frozen=True)
class Size:
    """``base`` times the largest stored value + ``agg`` times the largest aggregate +
    ``const`` bytes."""

    base: float = 0.0
    agg: float = 0.0
    const: float = 0.0

    def __add__(self, other: Size) -> Size:
        return Size(self.base + other.base, self.agg + other.agg, self.const + other.const)

    def times(self, k: float) -> Size:
        """This size ``k`` times over."""
        return Size(self.base * k, self.agg * k, self.const * k)

    def join(self, other: Size) -> Size:
        """The larger of two sizes, component by component."""
        return Size(
            max(self.base, other.base), max(self.agg, other.agg), max(self.const, other.const)
        )


LIMITS = Size(base=256, agg=4, const=64 * 1024)
FIXED = Size(const=16)  # a number, date, boolean...
UNIT = Size(base=1)
VARIABLE_TYPES = frozenset(
    {"VARCHAR", "BLOB", "BIT", "LIST", "ARRAY", "MAP", "STRUCT", "UNION", "VARIANT",
     "ANY", "GEOMETRY", "STRING_LITERAL", "UNKNOWN", "INVALID"}
)  # fmt: skip

# Aggregates whose result grows with the number of rows they read.
ACCUMULATING = words(
    """
    string_agg group_concat listagg list array_agg histogram histogram_exact
    json_group_array json_group_object json_group_structure
    """
)
TO_JSON = words("to_json json_quote array_to_json row_to_json json json_object json_array")
SPLITTERS = words(
    """
    string_split str_split split string_split_regex string_to_array regexp_split_to_array
    regexp_extract_all from_json from_json_strict json_transform json_transform_strict
    json_keys
    """
)
# Output at most this many times the sum of the inputs (escapes, encodings, splits
# into lists of 16-byte entries, case mapping in UTF-8, strftime specifiers).
MULTIPLIERS = {
    **dict.fromkeys(["hex", "to_hex", "base64", "to_base64"], 2),
    **dict.fromkeys(["bin", "to_binary"], 8),
    **dict.fromkeys(["upper", "lower", "ucase", "lcase"], 2),
    "url_encode": 3,
    "translate": 4,
    **dict.fromkeys(TO_JSON, 6),
    **dict.fromkeys(["json_pretty", "json_structure"], 8),
    "strftime": 16,
    **dict.fromkeys(SPLITTERS, 17),
}
CONSTANT_OUTPUT = {"bar": 3100.0, "to_base": 80.0, "format_bytes": 32.0}
LAMBDA_FUNCTIONS = words(
    """
    list_transform array_transform apply list_apply list_filter array_filter filter
    list_reduce array_reduce reduce
    """
)
PACKERS = words(
    """
    list_value list_pack array_value struct_pack row map map_from_entries union_value
    """
)
REDUCERS = frozenset({"list_reduce", "array_reduce", "reduce"})
JOINERS = frozenset({"array_to_string", "array_to_string_comma_default", "list_string_agg"})
LIST_AGGREGATES = words("list_aggregate list_aggr array_aggregate array_aggr aggregate")


def check_plan_sizes(plans: list[Node]) -> None:
    """Raise QueryRejected if any value of ``plans`` can exceed :data:`LIMITS`."""
    walker = _Walker()
    for plan in plans:
        walker.operator(plan)


class _Walker:
    def __init__(self) -> None:
        self.ctes: dict[int, Size] = {}
        self.seen = Size()  # the largest size so far: for correlated inputs

    def operator(self, op: Node) -> Size:
        kind = op.get("type", "")
        kids = [self.operator(child) for child in op.get("children", [])]
        if kind == "LOGICAL_MATERIALIZED_CTE" and len(kids) == 2:
            self.ctes[op.get("table_index", -1)] = kids[0]
            return kids[1]
        if kind == "LOGICAL_GET":
            out = UNIT
        elif kind == "LOGICAL_CTE_REF":
            out = self.ctes.get(op.get("cte_index", -1), self.seen)
        elif kind in ("LOGICAL_DELIM_GET", "LOGICAL_CHUNK_GET"):
            out = self.seen
        else:
            incoming = Size()
            for kid in kids:
                incoming = incoming.join(kid)
            out = incoming
            for expr in _top_expressions(op):
                out = out.join(self.expression(expr, incoming))
        self.seen = self.seen.join(out)
        return out

    def expression(self, expr: Node, incoming: Size, scope: _Lambda | None = None) -> Size:
        size = self._expression(expr, incoming, scope)
        _check(size, expr)
        return size

    def _expression(self, expr: Node, incoming: Size, scope: _Lambda | None) -> Size:
        cls = expr.get("expression_class", "")
        if cls == "BOUND_CONSTANT":
            return _constant(expr.get("value"))
        if cls in ("BOUND_REF", "BOUND_COLUMN_REF", "BOUND_LAMBDA_REF"):
            return scope.ref(expr) if scope is not None else incoming
        children = [self.expression(c, incoming, scope) for c in _child_expressions(expr)]
        if cls in ("BOUND_FUNCTION", "BOUND_AGGREGATE", "BOUND_WINDOW") and "qname" in expr:
            size = self._function(expr, children, incoming, scope)
        elif cls == "BOUND_CAST":
            size = _sum(children).times(2)
        elif cls in ("BOUND_CASE", "BOUND_UNNEST") or expr.get("type") == "OPERATOR_COALESCE":
            size = _max(children)
        else:
            size = _sum(children)
        return FIXED if _fixed(expr) and cls != "BOUND_LAMBDA" else size

    def _function(
        self, expr: Node, children: list[Size], incoming: Size, scope: _Lambda | None
    ) -> Size:
        name = expr["qname"]["path"][-1].lower()
        if name in ACCUMULATING:
            if expr.get("expression_class") == "BOUND_WINDOW":
                raise QueryRejected(
                    f"{name} as a window function can build a value as large as its whole "
                    "frame for every row"
                )
            return Size(agg=1)
        args = _child_expressions(expr)
        if name in LAMBDA_FUNCTIONS:
            return self._lambda(name, expr, args, children, incoming, scope)
        if name == "replace":
            return _replace(args, children)
        if name == "regexp_replace":
            return _regexp_replace(args, children)
        if name in JOINERS:
            return _joined(name, args, children)
        if name in LIST_AGGREGATES:
            return _list_aggregate(name, args, children)
        if name in CONSTANT_OUTPUT:
            return Size(const=CONSTANT_OUTPUT[name]) + _sum(children)
        entries = Size(const=16.0 * len(children)) if name in PACKERS else Size()
        return _sum(children).times(MULTIPLIERS.get(name, 1)) + entries

    def _lambda(
        self, name: str, expr: Node, args: list[Node], children: list[Size], incoming: Size,
        scope: _Lambda | None,
    ) -> Size:  # fmt: skip
        lam = next((a for a in args if a.get("expression_class") == "BOUND_LAMBDA"), None)
        if lam is None or not children:
            return _sum(children)
        where = args.index(lam)
        captures = children[where + 1 :]
        if any(c.base or c.agg or c.const > 16 for c in captures):
            raise QueryRejected(
                f"the lambda of {name} may not use string or list columns from outside it "
                "(the result could grow with their product)"
            )
        if name in REDUCERS and not _fixed(expr):
            raise QueryRejected(f"{name} may only reduce to a number, date or boolean")
        body = self.expression(
            lam.get("lambda_expr", {}), incoming, _Lambda(lam.get("parameter_count", 1))
        )
        growth = max(1.0, body.base + body.agg + body.const / 16)
        return children[0].times(growth)


@dataclass(frozen=True)
class _Lambda:
    """Inside a lambda body: its parameters count as one element each."""

    parameters: int

    def ref(self, expr: Node) -> Size:
        return UNIT if int(expr.get("index", 0)) < self.parameters else FIXED


def _replace(args: list[Node], children: list[Size]) -> Size:
    pattern, replacement = (_string_constant(a) for a in [*args, {}, {}, {}][1:3])
    if pattern is None or replacement is None:
        raise QueryRejected("replace needs constant strings as its pattern and replacement")
    growth = math.ceil(len(replacement) / len(pattern)) if pattern else 1
    return children[0].times(max(1, growth))


def _regexp_replace(args: list[Node], children: list[Size]) -> Size:
    replacement = _string_constant(args[2]) if len(args) > 2 else None
    options = _string_constant(args[3]) if len(args) > 3 else ""
    if replacement is None or options is None:
        raise QueryRejected("regexp_replace needs a constant replacement and constant options")
    copies = 1 + replacement.count("\\")  # each backreference can copy the whole match
    if "g" in options:  # every position can match (an empty pattern)
        return children[0].times(copies + len(replacement))
    return children[0].times(copies) + Size(const=len(replacement))


def _joined(name: str, args: list[Node], children: list[Size]) -> Size:
    separator = _string_constant(args[1]) if len(args) > 1 else ", "
    if separator is None:
        raise QueryRejected(f"{name} needs a constant separator")
    return children[0].times(1 + len(separator) / 16)  # a list holds >= 16 bytes per entry


def _list_aggregate(name: str, args: list[Node], children: list[Size]) -> Size:
    """``list_aggregate(list, 'string_agg', sep)`` joins with ``sep``, like a joiner."""
    aggregate = _string_constant(args[1]) if len(args) > 1 else None
    if aggregate is None:
        raise QueryRejected(f"{name} needs a constant aggregate name")
    if len(args) > 2:
        return _joined(name, [args[0], *args[2:]], [children[0], *children[2:]])
    return children[0] + Size(const=16)


def _check(size: Size, expr: Node) -> None:
    if size.base > LIMITS.base or size.agg > LIMITS.agg or size.const > LIMITS.const:
        what = ".".join(expr.get("qname", {}).get("path", [])[-1:]) or expr.get(
            "expression_class", "expression"
        )
        raise QueryRejected(
            f"{what} could build values larger than {LIMITS.base:.0f} times the largest "
            f"stored value plus {LIMITS.const / 1024:.0f} KiB (the limit on value sizes)"
        )


def _constant(value: Any) -> Size:
    if isinstance(value, dict) and isinstance(value.get("value"), str):
        return Size(const=len(value["value"].encode()))
    return Size(const=16 + len(json.dumps(value, default=str)))


def _string_constant(expr: Node) -> str | None:
    if expr.get("expression_class") != "BOUND_CONSTANT":
        return None
    value = expr.get("value") or {}
    return value.get("value") if isinstance(value.get("value"), str) else None


def _fixed(expr: Node) -> bool:
    kind = (expr.get("return_type") or {}).get("id", "INVALID")
    return kind not in VARIABLE_TYPES


def _sum(sizes: list[Size]) -> Size:
    out = Size()
    for size in sizes:
        out = out + size
    return out


def _max(sizes: list[Size]) -> Size:
    out = Size()
    for size in sizes:
        out = out.join(size)
    return out


def _top_expressions(op: Node) -> Iterator[Node]:
    """The expressions of an operator (not those of its children)."""
    for key, value in op.items():
        if key != "children":
            yield from _expressions_in(value)


def _child_expressions(expr: Node) -> list[Node]:
    """The expressions directly under ``expr``, in argument order."""
    out: list[Node] = []
    for key, value in expr.items():
        if key not in ("lambda_expr", "return_type", "value", "function_data"):
            out.extend(_expressions_in(value))
    return out


def _expressions_in(value: Any) -> Iterator[Node]:
    if isinstance(value, dict):
        if "expression_class" in value:
            yield value
        else:
            for inner in value.values():
                yield from _expressions_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _expressions_in(inner)
