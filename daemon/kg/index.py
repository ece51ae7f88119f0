"""Cosine similarity of benchmark configurations (and models), vectorized with numpy.

The feature vector of a configuration (model x hardware x batch size x precision) is

    [ z(ln throughput), z(ln latency), z(ln memory), z(log2 batch size),
      w * onehot(precision), w * onehot(hardware type), w * onehot(family),
      w * onehot(modality) ]

with geometric means over the configuration's results. The logs make "twice as fast"
the same distance whatever the magnitude; the z-score (mean 0, standard deviation 1 over
all configurations) centres the vector, so that the cosine compares how a configuration
deviates from the typical one instead of calling every positive vector similar. A
missing value is the mean (z = 0). Min-max scaling was not used because one extreme
configuration would squeeze every other value together. Each categorical block is a
one-hot of weight ``w`` (default 0.5): agreeing on one category adds ``w^2`` to the dot
product, about what a quarter of a standard deviation in every numeric feature adds.

One-hot blocks are never materialized: a dot product with a one-hot block is ``w^2``
when the codes are equal, so the similarity of one query against N configurations is
one (N x 4) matrix-vector product plus four integer comparisons over N codes. Top-k
uses ``argpartition``. The raw (log) matrix is cached in memory, patched with the
configurations an incremental update changed, and re-normalized (O(N), a few ms).

A model's vector is the mean of its configurations' numeric part plus its family and
modality blocks; models are compared like configurations.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.kg.sql import family_sql
from daemon.store.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")


CATEGORY_WEIGHT = 0.5
NUMERIC = ("lthr", "llat", "lmem", "lbatch")
CATEGORIES = ("precision", "hardware_type", "family", "modality")

# The same family, modality and hardware type as the kg.models / kg.hardware views, but
# joined per configuration, so that patching a few configurations reads only those.
LOAD_SQL = f"""
    SELECT c.config_id, c.model_id, c.hardware_id, c.batch_size, c.precision,
           coalesce(nullif(lower(h.hardware_type), ''), split_part(c.hardware_id, ':', 1))
               AS hardware_type,
           coalesce(nullif(lower(trim(m.model_family)), ''),
                    {family_sql("coalesce(m.model_name, c.model_id)")}) AS family,
           nullif(lower(trim(m.modality)), '') AS modality, c.n_results,
           CASE WHEN c.n_thr > 0 THEN c.s_thr / c.n_thr END AS lthr,
           CASE WHEN c.n_lat > 0 THEN c.s_lat / c.n_lat END AS llat,
           CASE WHEN c.n_mem > 0 THEN c.s_mem / c.n_mem END AS lmem,
           log2(greatest(c.batch_size, 1)) AS lbatch
    FROM kg.configs c
    LEFT JOIN store.models m ON m.model_id = c.model_id
    LEFT JOIN store.hardware_platforms h ON h.hardware_id = c.hardware_id
"""


@dataclass(frozen=True)
class Match:
    """One similar node."""

    node: str
    kind: str
    similarity: float
    details: dict[str, Any]


class Codes:
    """Stable integer codes for category values (None is -1)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """Codes of string ``values`` as int32, new values getting new codes.

        Arrow's dictionary encoding finds the distinct values at C speed; only those go
        through the Python dict."""
        encoded = pa.array(values, pa.string()).dictionary_encode()
        table = self._codes
        known = [table.setdefault(v, len(table)) for v in encoded.dictionary.to_pylist()]
        lookup = np.asarray([*known, -1], dtype=np.int32)  # index -1 (null) -> code -1
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return lookup[indices]


class SimilarityIndex:
    """Configuration vectors in memory; thread-safe; loaded lazily from ``kg.configs``."""

    def __init__(self, weight: float = CATEGORY_WEIGHT) -> None:
        self.weight = weight
        self._lock = threading.Lock()
        self._loaded = False
        self._dirty: set[str] = set()
        self._full_reload = True
        self._normalized = False
        self._codes = {name: Codes() for name in (*CATEGORIES, "model")}
        self._models_cache: tuple[np.ndarray, np.ndarray, np.ndarray, list[int]] | None = None
        # The arrays (and numpy) come with the first ensure(): _full_reload is set.
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def _empty(self) -> None:
        self.ids = []
        self.pos = {}
        self.z = np.zeros((0, len(NUMERIC)))
        self.norm2 = np.zeros(0)
        self.raw = np.zeros((0, len(NUMERIC)))
        self.cats = np.zeros((0, len(CATEGORIES)), dtype=np.int32)
        self.model = np.zeros(0, dtype=np.int32)
        self.info: dict[str, np.ndarray] = {}

    # -- invalidation (writer thread) -----------------------------------------------------

    def invalidate(self, config_ids: Iterable[str] | None = None) -> None:
        """Forget some configurations (patched on the next query) or everything (None)."""
        with self._lock:
            if config_ids is None:
                self._full_reload = True
            else:
                self._dirty.update(config_ids)

    # -- loading -------------------------------------------------------------------------------

    def ensure(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Bring the cached matrix up to date with ``kg.configs`` (reload or patch)."""
        with self._lock:
            dirty = self._dirty
            if self._full_reload or len(dirty) > max(1000, len(self.ids) // 5):
                self._dirty, self._full_reload = set(), False
                self._empty()
                self._append(self._fetch(cur, None))
                self._normalized = False
            elif dirty:
                self._dirty = set()
                self._patch(cur, sorted(dirty))
            if not self._normalized:
                self._normalize()

    def _fetch(self, cur: duckdb.DuckDBPyConnection, ids: Sequence[str] | None) -> dict[str, Any]:
        if ids is None:
            table = cur.sql(LOAD_SQL + " ORDER BY c.config_id").to_arrow_table()
        else:
            cur.register("kg_ids", pa.table({"config_id": pa.array(list(ids), pa.string())}))
            try:
                where = " WHERE c.config_id IN (SELECT config_id FROM kg_ids)"
                table = cur.sql(LOAD_SQL + where).to_arrow_table()
            finally:
                cur.unregister("kg_ids")
        return {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.schema.names
        }

    def _columns(self, rows: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw = np.column_stack([np.asarray(rows[n], dtype=np.float64) for n in NUMERIC]).reshape(
            -1, len(NUMERIC)
        )
        cats = np.column_stack([self._codes[n].encode(rows[n]) for n in CATEGORIES]).reshape(
            -1, len(CATEGORIES)
        )
        return raw, cats, self._codes["model"].encode(rows["model_id"])

    def _append(self, rows: dict[str, Any]) -> None:
        raw, cats, model = self._columns(rows)
        start = len(self.ids)
        new_ids = [str(x) for x in rows["config_id"]]
        self.ids.extend(new_ids)
        self.pos.update(zip(new_ids, range(start, start + len(new_ids)), strict=True))
        self.raw = np.concatenate([self.raw, raw])
        self.cats = np.concatenate([self.cats, cats])
        self.model = np.concatenate([self.model, model])
        for name in ("model_id", "hardware_id", "batch_size", "precision", "n_results"):
            values = np.asarray(rows[name], dtype=object)
            old = self.info.get(name, np.zeros(0, dtype=object))
            self.info[name] = np.concatenate([old, values])

    def _patch(self, cur: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> None:
        rows = self._fetch(cur, ids)
        present = {str(x): i for i, x in enumerate(rows["config_id"])}
        gone = [self.pos[i] for i in ids if i not in present and i in self.pos]
        at = np.asarray([self.pos.get(str(x), -1) for x in rows["config_id"]], dtype=np.int64)
        known, fresh = at >= 0, at < 0
        if known.any():
            raw, cats, model = self._columns({k: v[known] for k, v in rows.items()})
            self.raw[at[known]], self.cats[at[known]], self.model[at[known]] = raw, cats, model
            for name, column in self.info.items():
                column[at[known]] = rows[name][known]
        if fresh.any():
            self._append({k: v[fresh] for k, v in rows.items()})
        if gone:
            self._remove(gone)
        self._normalized = False

    def _remove(self, rows: list[int]) -> None:
        keep = np.ones(len(self.ids), dtype=bool)
        keep[rows] = False
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self.pos = {i: n for n, i in enumerate(self.ids)}
        self.raw, self.cats, self.model = self.raw[keep], self.cats[keep], self.model[keep]
        self.info = {k: v[keep] for k, v in self.info.items()}

    def _normalize(self) -> None:
        """z-scores of the numeric columns (missing -> 0) and squared vector norms."""
        raw = self.raw
        present = ~np.isnan(raw)
        count = np.maximum(present.sum(axis=0), 1)
        values = np.where(present, raw, 0.0)
        mean = values.sum(axis=0) / count
        centred = np.where(present, raw - mean, 0.0)
        std = np.sqrt((centred**2).sum(axis=0) / count)
        std = np.where(std < 1e-12, 1.0, std)
        self.z = centred / std
        w2 = self.weight**2
        self.norm2 = (self.z**2).sum(axis=1) + w2 * (self.cats >= 0).sum(axis=1)
        self._models_cache = None
        self._normalized = True

    # -- queries (reader threads) --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def similar(
        self, cur: duckdb.DuckDBPyConnection, node: str, top_k: int, min_similarity: float
    ) -> tuple[str, str, list[Match]]:
        """The ``top_k`` nodes most similar to ``node`` (a configuration or a model id).

        Returns (resolved node id, its kind, matches). Raises KeyError for an unknown node.
        """
        self.ensure(cur)
        with self._lock:
            key = node.split(":", 1)[1] if node.startswith(("config:", "model:")) else node
            if not node.startswith("model:") and key in self.pos:
                return f"config:{key}", "config", self._similar_configs(key, top_k, min_similarity)
            code = self._codes["model"]._codes.get(key)
            if code is not None and not node.startswith("config:"):
                matches = self._similar_models(code, top_k, min_similarity)
                if matches is not None:
                    return f"model:{key}", "model", matches
        raise KeyError(node)

    def _similar_configs(self, key: str, top_k: int, min_sim: float) -> list[Match]:
        i = self.pos[key]
        sims = self._cosine(self.z, self.cats, self.norm2, self.z[i], self.cats[i], self.norm2[i])
        sims[i] = -np.inf
        best = _top(sims, top_k, min_sim)
        info = self.info
        return [
            Match(
                f"config:{self.ids[j]}",
                "config",
                round(float(sims[j]), 6),
                {
                    "model_id": info["model_id"][j],
                    "hardware_id": info["hardware_id"][j],
                    "batch_size": int(info["batch_size"][j]),
                    "precision": info["precision"][j],
                    "n_results": int(info["n_results"][j]),
                    "throughput": _exp(self.raw[j, 0]),
                    "latency_ms": _exp(self.raw[j, 1]),
                    "memory_mb": _exp(self.raw[j, 2]),
                },
            )
            for j in best
        ]

    def model_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Per model (with configurations): mean numeric z, family/modality codes, norm^2,
        and the model codes in row order."""
        if self._models_cache is None:
            codes, inverse = np.unique(self.model, return_inverse=True)
            counts = np.bincount(inverse, minlength=len(codes)).astype(np.float64)
            z = (
                np.column_stack(
                    [np.bincount(inverse, self.z[:, c], len(codes)) for c in range(self.z.shape[1])]
                ).reshape(len(codes), -1)
                / np.maximum(counts, 1)[:, None]
            )
            first = np.zeros(len(codes), dtype=np.int64)
            first[inverse[::-1]] = np.arange(len(inverse))[::-1]
            cats = self.cats[first][:, 2:4] if len(first) else np.zeros((0, 2), np.int32)
            norm2 = (z**2).sum(axis=1) + self.weight**2 * (cats >= 0).sum(axis=1)
            self._models_cache = (z, cats, norm2, [int(c) for c in codes])
        return self._models_cache

    def model_names(self) -> dict[int, str]:
        """Model code -> model id."""
        return {c: name for name, c in self._codes["model"]._codes.items()}

    def _similar_models(self, code: int, top_k: int, min_sim: float) -> list[Match] | None:
        z, cats, norm2, codes = self.model_vectors()
        try:
            i = codes.index(code)
        except ValueError:
            return None
        sims = self._cosine(z, cats, norm2, z[i], cats[i], norm2[i])
        sims[i] = -np.inf
        names = self.model_names()
        return [
            Match(f"model:{names[codes[j]]}", "model", round(float(sims[j]), 6), {})
            for j in _top(sims, top_k, min_sim)
        ]

    def _cosine(
        self,
        z: np.ndarray,
        cats: np.ndarray,
        norm2: np.ndarray,
        zq: np.ndarray,
        cq: np.ndarray,
        nq: float,
    ) -> np.ndarray:
        dot = z @ zq
        w2 = self.weight**2
        for b in range(cats.shape[1]):
            if cq[b] >= 0:
                dot += w2 * (cats[:, b] == cq[b])
        denom = np.sqrt(norm2 * nq)
        return np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)

    def similar_model_edges(
        self, cur: duckdb.DuckDBPyConnection, per_model: int, min_similarity: float
    ) -> list[tuple[str, str, float]]:
        """Directed edges model -> its ``per_model`` most similar models (>= threshold)."""
        self.ensure(cur)
        with self._lock:
            z, cats, norm2, codes = self.model_vectors()
            names = self.model_names()
            edges: list[tuple[str, str, float]] = []
            for start in range(0, len(codes), 1024):  # blocks bound the memory
                stop = min(start + 1024, len(codes))
                dot = z[start:stop] @ z.T
                for b in range(cats.shape[1]):
                    same = cats[start:stop, b][:, None] == cats[:, b][None, :]
                    dot += self.weight**2 * (same & (cats[:, b] >= 0)[None, :])
                with np.errstate(divide="ignore", invalid="ignore"):
                    sims = np.nan_to_num(dot / np.sqrt(norm2[start:stop, None] * norm2[None, :]))
                sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
                for row in range(stop - start):
                    for j in _top(sims[row], per_model, min_similarity):
                        src, dst = names[codes[start + row]], names[codes[j]]
                        edges.append((src, dst, round(float(sims[row, j]), 6)))
            return edges


def _top(sims: np.ndarray, k: int, min_sim: float) -> list[int]:
    """Indices of the ``k`` largest values >= ``min_sim``, best first (ties by index)."""
    if min_sim <= -1.0:  # every finite value qualifies: no filtering pass
        candidates = np.flatnonzero(np.isfinite(sims)) if k >= len(sims) - 1 else None
        if candidates is None:
            best = np.argpartition(-sims, k - 1)[:k]
            best = best[np.isfinite(sims[best])]
            return [int(c) for c in best[np.lexsort((best, -sims[best]))]]
    else:
        candidates = np.flatnonzero(sims >= min_sim)
    if len(candidates) > k:
        part = np.argpartition(-sims[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.lexsort((candidates, -sims[candidates]))
    return [int(c) for c in candidates[order]]


def _exp(value: float) -> float | None:
    return None if math.isnan(value) else round(math.exp(value), 6)
