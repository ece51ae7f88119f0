"""Split a query into a map fragment and a reduce query (sqlglot AST transforms, no I/O).

The map fragment runs on every partition of the fact table (``performance_results``);
the other tables are full replicas on every peer, so a join with them inside a
fragment is correct. The reduce query runs at the coordinator over the union of the
map outputs, registered as the table ``_partials``. Output columns of the reduce
query are positional: the caller names them after the original query.

Queries whose split would not be exact get ``Plan(distributed=False, reason=...)``
and run on one node.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from daemon.query.lazysqlglot import exp, sqlglot

FACT_TABLE = "performance_results"
FACT_KEY = "result_id"
PARTIALS = "_partials"
_DIALECT = "duckdb"


@functools.cache
def _splittable_aggs() -> tuple[type[exp.AggFunc], ...]:
    return (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


@functools.cache
def _refused_nodes() -> tuple[tuple[type[exp.Expression], str], ...]:
    return (
        (exp.Window, "window functions"),
        (exp.Filter, "aggregate FILTER clauses"),
        (exp.Lateral, "LATERAL"),
        (exp.Unnest, "UNNEST"),
        (exp.Pivot, "PIVOT"),
        (exp.TableSample, "SAMPLE"),
    )


class NotSplittable(Exception):
    """The query cannot be split exactly; the message says why."""


@dataclass(frozen=True)
class Plan:
    """How a query runs: distributed (map + reduce) or on one node (with a reason)."""

    distributed: bool
    reason: str = ""
    map_sql: str = ""
    reduce_sql: str = ""


@functools.lru_cache(maxsize=256)
def plan_query(sql: str) -> Plan:
    """Split ``sql`` into map and reduce, or say why it must run on one node."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECT) if s is not None]
    except (sqlglot.errors.SqlglotError, RecursionError) as exc:
        return Plan(False, f"cannot parse query: {str(exc).splitlines()[0]}")
    if len(statements) != 1:
        return Plan(False, "exactly one statement is split")
    try:
        map_q, reduce_q = _split(statements[0])
    except NotSplittable as exc:
        return Plan(False, str(exc))
    return Plan(True, "", map_q.sql(_DIALECT), reduce_q.sql(_DIALECT))


def _split(query: exp.Expression) -> tuple[exp.Select, exp.Select]:
    select = _check_shape(query)
    if _is_aggregate(select):
        return _AggregateSplit(select).split()
    return _split_rows(select)


# -- shape checks ------------------------------------------------------------------------


def _check_shape(query: exp.Expression) -> exp.Select:
    if not isinstance(query, exp.Select):
        raise NotSplittable(f"only a plain SELECT is split, not {query.key.upper()}")
    if query.args.get("with"):
        raise NotSplittable("WITH clauses run on one node")
    distinct = query.args.get("distinct")
    if isinstance(distinct, exp.Distinct) and distinct.args.get("on"):
        raise NotSplittable("DISTINCT ON runs on one node")
    for kind, what in _refused_nodes():
        if query.find(kind):
            raise NotSplittable(f"{what} run on one node")
    if any(s is not query for s in query.find_all(exp.Select)) or query.find(exp.Subquery):
        raise NotSplittable("subqueries run on one node")
    if query.args.get("qualify"):
        raise NotSplittable("QUALIFY runs on one node")
    _check_tables(query)
    return query


def _check_tables(select: exp.Select) -> None:
    facts = [t for t in select.find_all(exp.Table) if t.name.lower() == FACT_TABLE]
    if not facts:
        raise NotSplittable(f"the query does not read {FACT_TABLE}, the partitioned table")
    if len(facts) > 1:
        raise NotSplittable(f"{FACT_TABLE} is read more than once")
    joins = select.args.get("joins") or []
    fact_in_from = _from_table(select) is facts[0]
    for join in joins:
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        if kind not in ("", "INNER", "OUTER", "CROSS") or join.args.get("method"):
            raise NotSplittable(f"{kind or join.args.get('method')} joins run on one node")
        if side in ("RIGHT", "FULL") or (side == "LEFT" and not fact_in_from):
            raise NotSplittable(
                f"an outer join that preserves rows of a replicated table runs on one node "
                f"(put {FACT_TABLE} first for a LEFT JOIN)"
            )


def _from_table(select: exp.Select) -> exp.Expression | None:
    source = select.args.get("from") or select.args.get("from_")
    return source.this if source is not None else None


def _is_aggregate(select: exp.Select) -> bool:
    if select.args.get("group"):
        return True
    parts = [*select.expressions, select.args.get("having")]
    return any(p is not None and p.find(exp.AggFunc) for p in parts)


def _partials_table() -> exp.Table:
    return exp.to_table(PARTIALS)


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=False)


def _limit_value(select: exp.Select, name: str) -> int | None:
    node = select.args.get(name)
    if node is None:
        return 0 if name == "offset" else None
    value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
    if isinstance(value, exp.Literal) and value.is_int:
        return int(value.this)
    return None


# -- aggregates ----------------------------------------------------------------------------


class _AggregateSplit:
    """GROUP BY / aggregate queries: partial aggregates per partition, merged in reduce."""

    def __init__(self, select: exp.Select) -> None:
        self.select = select
        self.keys = self._group_keys()
        self.map_cols: list[exp.Expression] = []
        self._partials: dict[str, str] = {}  # partial SQL -> map column
        self.distinct_args: list[exp.Expression] = []
        self.aliases = {e.alias for e in select.expressions if isinstance(e, exp.Alias)}

    def _group_keys(self) -> list[exp.Expression]:
        group = self.select.args.get("group")
        if group is None:
            return []
        for part in ("grouping_sets", "cube", "rollup"):
            if group.args.get(part):
                raise NotSplittable(f"GROUP BY {part.upper().replace('_', ' ')} runs on one node")
        if group.args.get("all"):
            return [e.unalias().copy() for e in self.select.expressions if not e.find(exp.AggFunc)]
        return [self._resolve_key(k) for k in group.expressions]

    def _resolve_key(self, key: exp.Expression) -> exp.Expression:
        projections = self.select.expressions
        if isinstance(key, exp.Literal) and key.is_int:
            index = int(key.this) - 1
            if not 0 <= index < len(projections):
                raise NotSplittable("GROUP BY position out of range")
            return projections[index].unalias().copy()
        if isinstance(key, exp.Column) and not key.table:
            for e in projections:
                if isinstance(e, exp.Alias) and e.alias == key.name and not _is_column(key.name):
                    return e.this.copy()
        if key.find(exp.AggFunc):
            raise NotSplittable("aggregates in GROUP BY")
        return key.copy()

    def split(self) -> tuple[exp.Select, exp.Select]:
        reduce_q = exp.Select(expressions=[self._rewrite(e) for e in self.select.expressions])
        reduce_q.from_(PARTIALS, copy=False)
        if self.keys:
            reduce_q.set(
                "group", exp.Group(expressions=[_col(f"_g{i}") for i in range(len(self.keys))])
            )
        if self.select.args.get("having"):
            reduce_q.set("having", exp.Having(this=self._rewrite(self.select.args["having"].this)))
        order = self.select.args.get("order")
        if order is not None:
            reduce_q.set(
                "order", exp.Order(expressions=[self._rewrite(o) for o in order.expressions])
            )
        for arg in ("limit", "offset", "distinct"):
            if self.select.args.get(arg) is not None:
                reduce_q.set(arg, self.select.args[arg].copy())
        self._check_leftovers(reduce_q)
        return self._map_query(), reduce_q

    def _map_query(self) -> exp.Select:
        cols = [exp.alias_(k.copy(), f"_g{i}") for i, k in enumerate(self.keys)]
        cols += [exp.alias_(d.copy(), f"_d{i}") for i, d in enumerate(self.distinct_args)]
        map_q = self.select.copy()
        map_q.set("expressions", cols + self.map_cols)
        grouping = [k.copy() for k in self.keys + self.distinct_args]
        map_q.set("group", exp.Group(expressions=grouping) if grouping else None)
        for arg in ("having", "order", "limit", "offset", "distinct"):
            map_q.set(arg, None)
        return map_q

    def _rewrite(self, node: exp.Expression) -> exp.Expression:
        def fn(n: exp.Expression) -> exp.Expression:
            for i, key in enumerate(self.keys):
                if n == key and not isinstance(n, exp.Literal):
                    return _col(f"_g{i}")
            if isinstance(n, exp.AggFunc):
                return self._reduce_agg(n)
            return n

        return node.copy().transform(fn)

    def _partial(self, expr: exp.Expression) -> exp.Column:
        key = expr.sql(_DIALECT)
        if key not in self._partials:
            name = f"_a{len(self._partials)}"
            self._partials[key] = name
            self.map_cols.append(exp.alias_(expr, name))
        return _col(self._partials[key])

    def _reduce_agg(self, agg: exp.AggFunc) -> exp.Expression:
        if not isinstance(agg, _splittable_aggs()):
            raise NotSplittable(f"aggregate {agg.sql_name()} cannot be split exactly")
        arg = agg.this
        if isinstance(arg, exp.Distinct):
            return self._reduce_distinct(agg, arg)
        if isinstance(agg, exp.Count):
            total = exp.Sum(this=self._partial(exp.Count(this=(arg or exp.Star()).copy())))
            return exp.cast(exp.Coalesce(this=total, expressions=[exp.Literal.number(0)]), "BIGINT")
        if isinstance(agg, exp.Avg):
            s = exp.Sum(this=self._partial(exp.Sum(this=arg.copy())))
            c = exp.Sum(this=self._partial(exp.Count(this=arg.copy())))
            return exp.Div(
                this=exp.cast(s, "DOUBLE"),
                expression=exp.Nullif(this=c, expression=exp.Literal.number(0)),
            )
        if len(agg.expressions) > 0 or arg is None:
            raise NotSplittable(f"{agg.sql_name()} with several arguments cannot be split")
        return type(agg)(this=self._partial(type(agg)(this=arg.copy())))

    def _reduce_distinct(self, agg: exp.AggFunc, distinct: exp.Distinct) -> exp.Expression:
        if len(distinct.expressions) != 1:
            raise NotSplittable("DISTINCT aggregates over several columns run on one node")
        value = distinct.expressions[0]
        known = [i for i, d in enumerate(self.distinct_args) if d == value]
        i = known[0] if known else len(self.distinct_args)
        if not known:
            self.distinct_args.append(value.copy())
        return type(agg)(this=exp.Distinct(expressions=[_col(f"_d{i}")]))

    def _check_leftovers(self, reduce_q: exp.Select) -> None:
        for column in reduce_q.find_all(exp.Column):
            name = column.name
            internal = name.startswith(("_g", "_a", "_d")) and not column.table
            if not internal and not (name in self.aliases and not column.table):
                raise NotSplittable(
                    f"{column.sql(_DIALECT)} is neither grouped nor aggregated in a way "
                    "that can be split"
                )


def _is_column(name: str) -> bool:
    from protocol.schema import TABLES

    return any(name in t.column_names for t in TABLES.values())


# -- plain rows (filters, projections, top-k) --------------------------------------------


def _split_rows(select: exp.Select) -> tuple[exp.Select, exp.Select]:
    projections = select.expressions
    has_star = any(isinstance(e, exp.Star) or e.find(exp.Star) for e in projections)
    map_q = select.copy()
    map_cols = list(projections) if has_star else [
        exp.alias_(e.unalias().copy(), f"_c{i}") for i, e in enumerate(projections)
    ]  # fmt: skip
    extras: list[exp.Expression] = []
    map_order: list[exp.Ordered] = []
    reduce_order: list[exp.Ordered] = []
    order = select.args.get("order")
    distinct = select.args.get("distinct") is not None
    for ordered in order.expressions if order is not None else []:
        target = None if has_star else _projection_index(select, ordered.this)
        if target is not None:
            name = f"_c{target}"
        else:
            if distinct or (isinstance(ordered.this, exp.Literal) and ordered.this.is_int):
                raise NotSplittable("this ORDER BY with DISTINCT or * runs on one node")
            name = f"_o{len(extras)}"
            extras.append(exp.alias_(ordered.this.copy(), name))
        map_order.append(_reordered(ordered, name))
        reduce_order.append(_reordered(ordered, name))
    map_q.set("expressions", map_cols + extras)
    reduce_q = _rows_reduce(select, has_star, len(projections), [e.alias for e in extras])
    if reduce_order:
        reduce_q.set("order", exp.Order(expressions=reduce_order))
    _push_limit(select, map_q, reduce_q, map_order)
    return map_q, reduce_q


def _rows_reduce(select: exp.Select, star: bool, n: int, extras: list[str]) -> exp.Select:
    if star:
        star_node = exp.Star(**({"except_": [_col(e) for e in extras]} if extras else {}))
        reduce_q = exp.Select(expressions=[star_node])
    else:
        reduce_q = exp.Select(expressions=[_col(f"_c{i}") for i in range(n)])
    reduce_q.from_(PARTIALS, copy=False)
    if select.args.get("distinct") is not None:
        reduce_q.set("distinct", exp.Distinct())
    return reduce_q


def _push_limit(
    select: exp.Select, map_q: exp.Select, reduce_q: exp.Select, map_order: list[exp.Ordered]
) -> None:
    map_q.set("order", exp.Order(expressions=map_order) if map_order else None)
    map_q.set("offset", None)
    map_q.set("limit", None)
    if select.args.get("limit") is None:
        if select.args.get("offset") is not None:
            reduce_q.set("offset", select.args["offset"].copy())
        return
    limit, offset = _limit_value(select, "limit"), _limit_value(select, "offset")
    if limit is not None and offset is not None:
        map_q.set("limit", exp.Limit(expression=exp.Literal.number(limit + offset)))
    for arg in ("limit", "offset"):
        if select.args.get(arg) is not None:
            reduce_q.set(arg, select.args[arg].copy())


def _projection_index(select: exp.Select, expr: exp.Expression) -> int | None:
    projections = select.expressions
    if isinstance(expr, exp.Literal) and expr.is_int:
        index = int(expr.this) - 1
        if not 0 <= index < len(projections):
            raise NotSplittable("ORDER BY position out of range")
        return index
    for i, e in enumerate(projections):
        bare = isinstance(expr, exp.Column) and not expr.table
        if isinstance(e, exp.Alias) and bare and e.alias == expr.name:
            return i
        if e.unalias() == expr:
            return i
    return None


def _reordered(ordered: exp.Ordered, name: str) -> exp.Ordered:
    copy = ordered.copy()
    copy.set("this", _col(name))
    return copy
