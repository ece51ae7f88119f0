"""How much of a distributed query each peer should take: its measured capacity.

A peer's weight is a *prior* from what it says about itself (cores, its host's load
average, busy database slots; the ``Capacity`` message on its query link) times a
*correction* learned from its answers. After each query over at least
``MIN_OBSERVED_ROWS`` rows in which every participant's slice took at least
``MIN_OBSERVED_MS`` beyond that peer's fixed overhead (learned from small queries), each
participant's speed (its share of the rows over the time the coordinator waited for it)
is compared with what its weight predicted: a peer slower than predicted gets a smaller
correction, a faster one a larger (30 % of the deviation per query, none within 25 %:
the test machine's scheduling noise is about that). Timing is the coordinator's own, so
a peer cannot talk its way into more work.

A *straggler*, a participant that took more than twice as long as every other one and
at least 100 ms longer, is cut at once to the share with which it would have finished
with them (its share scaled by their time over its own): a peer that claims cores it
does not have gets less work right after its first slow answer. (Speeds alone would not
catch it: the others' small slices are mostly fixed costs and look slow too.) A failed
or late partition halves the correction. Corrections are relative (their geometric mean
over a query's participants stays 1) and bounded to 1/1024 … 1024.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from protocol.messages import Capacity

MIN_OBSERVED_MS = 50.0  # shorter slices measure overheads and scheduling, not speed
MIN_OBSERVED_ROWS = 100_000  # nor do queries over fewer rows
SMALL_ROWS = 20_000  # queries over fewer rows than this measure each peer's overhead
STRAGGLER = 2.0  # this many times slower than every other participant: cut at once
STRAGGLER_MS = 100.0  # and by at least this much (a scheduling hiccup is not a liar)
SMOOTHING = 0.3  # otherwise this part of a deviation is taken
NOISE = 1.25  # deviations within this factor are noise
BOUND = 1024.0
TOLD_TTL = 60.0  # a capacity report older than this is ignored


def prior(cores: int, load: float, busy: float) -> float:
    """Cores a new query can expect to use: all of them on an idle host, a fair share
    of them when the host's run queue (``load``) is longer than its cores, less for
    database slots already busy."""
    cores = max(cores, 1)
    share = min(1.0, cores / (max(load, 0.0) + 1.0))
    return cores * share / (1.0 + max(busy, 0.0) / 2.0)


def worth_reporting(new: Capacity, last: Capacity | None, change: float) -> bool:
    """True if ``new`` moves the prior by more than ``change`` (relative) from ``last``."""
    if last is None:
        return True
    before, after = prior(last.cores, last.load, last.busy), prior(new.cores, new.load, new.busy)
    return abs(after - before) > change * before


def local_capacity(busy: float) -> Capacity:
    """This host's capacity report."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return Capacity(cores=max(cores, 1), load=round(load, 2), busy=busy)


@dataclass
class _Peer:
    told: Capacity | None = None
    told_at: float = float("-inf")
    correction: float = 1.0
    observations: int = 0
    overhead_ms: float = 0.0  # what a tiny fragment costs this peer end to end


class CapacityModel:
    """Weights of peers for slicing a query; learns from every query it plans."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._peers: dict[str, _Peer] = {}

    def _peer(self, peer: str) -> _Peer:
        return self._peers.setdefault(peer, _Peer())

    def told(self, peer: str, capacity: Capacity) -> None:
        """``peer`` reported its capacity."""
        state = self._peer(peer)
        state.told, state.told_at = capacity, self._clock()

    def prior(self, peer: str) -> float | None:
        """The prior of a peer that reported recently, else None."""
        state = self._peers.get(peer)
        if state is None or state.told is None or self._clock() - state.told_at > TOLD_TTL:
            return None
        return prior(state.told.cores, state.told.load, state.told.busy)

    def weights(self, peers: Iterable[str]) -> dict[str, float]:
        """Relative capacity of each peer (a peer that never reported gets the median
        prior of those that did)."""
        peers = list(peers)
        priors = {p: self.prior(p) for p in peers}
        known = sorted(v for v in priors.values() if v is not None)
        default = known[len(known) // 2] if known else 1.0
        return {
            p: (priors[p] if priors[p] is not None else default) * self._peer(p).correction
            for p in peers
        }

    def describe(self, peer: str) -> dict[str, float | int | None]:
        """What the model holds about ``peer`` (cluster status)."""
        state = self._peers.get(peer, _Peer())
        return {
            "cores": state.told.cores if state.told is not None else None,
            "host_load": state.told.load if state.told is not None else None,
            "correction": round(state.correction, 3),
            "weight": round(self.weights([peer])[peer], 3) if self.prior(peer) else None,
        }

    def correction(self, peer: str) -> float:
        """The learned factor of ``peer`` (1.0 until it answered)."""
        return self._peer(peer).correction

    def observe(self, used: Mapping[str, float], share: Mapping[str, float],
                elapsed_ms: Mapping[str, float], rows: float) -> None:  # fmt: skip
        """Learn from one query over ``rows`` rows: ``used`` weights, each peer's
        ``share`` of the rows and the milliseconds the coordinator waited for it."""
        peers = [p for p in used if share.get(p, 0) > 0 and elapsed_ms.get(p, 0) > 0]
        if rows < SMALL_ROWS:
            for p in peers:
                state = self._peer(p)
                state.overhead_ms += (elapsed_ms[p] - state.overhead_ms) * 0.2
            return
        work = {p: elapsed_ms[p] - self._peer(p).overhead_ms for p in peers}
        if len(peers) < 2 or rows < MIN_OBSERVED_ROWS or max(work.values()) < MIN_OBSERVED_MS:
            return
        work = {p: max(w, elapsed_ms[p] / 4) for p, w in work.items()}
        if any([self._cut_straggler(p, peers, used, share, work) for p in peers]):
            return  # the others' times say little next to a straggler's
        if min(work.values()) < MIN_OBSERVED_MS:
            return  # someone's slice was mostly fixed costs
        ratio = {p: share[p] / work[p] / max(used[p], 1e-12) for p in peers}
        mean = _geomean(ratio.values())
        for p in peers:
            state = self._peer(p)
            quality = ratio[p] / mean
            if not 1 / NOISE <= quality <= NOISE:
                state.correction *= quality**SMOOTHING
            state.observations += 1
        self._renormalize(peers)

    def _cut_straggler(self, peer: str, peers: list[str], used: Mapping[str, float],
                       share: Mapping[str, float], work: Mapping[str, float]) -> bool:  # fmt: skip
        """Cut ``peer`` to the share it would have finished on time with; True if it
        was a straggler."""
        others = [q for q in peers if q != peer]
        slowest_other = max(work[q] for q in others)
        if work[peer] <= max(STRAGGLER * slowest_other, slowest_other + STRAGGLER_MS):
            return False
        target = share[peer] * slowest_other / work[peer]
        rest = sum(used[q] for q in others)
        wanted = target * rest / (1.0 - target)
        state = self._peer(peer)
        factor = wanted / max(used[peer], 1e-12)
        state.correction = min(max(state.correction * factor, 1 / BOUND), BOUND)
        state.observations += 1
        return True

    def penalize(self, peer: str) -> None:
        """``peer`` failed or missed its deadline."""
        state = self._peer(peer)
        state.correction = max(state.correction / 2.0, 1 / BOUND)

    def _renormalize(self, peers: list[str]) -> None:
        mean = _geomean(self._peer(p).correction for p in peers)
        for p in peers:
            state = self._peer(p)
            state.correction = min(max(state.correction / mean, 1 / BOUND), BOUND)


def _geomean(values: Iterable[float]) -> float:
    logs = [math.log(max(v, 1e-300)) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else 1.0
