"""daemon.watch.hub: shared evaluation, events to every subscriber, lagging subscribers."""

from __future__ import annotations

import trio
import trio.testing

from daemon.watch.hub import Hub, Result

TABLES = frozenset({"models"})


class Table:
    """A fake query result the test edits between commits."""

    def __init__(self) -> None:
        self.rows: list[tuple[object, ...]] = [("bert", 1)]

    async def evaluate(self, sql: str) -> Result:
        await trio.sleep(0)
        return Result(["model_id", "n"], list(self.rows), "bafy")


async def test_subscribers_of_one_query_share_its_evaluation() -> None:
    table = Table()
    hub = Hub(table.evaluate)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.serve)
        subs = [await hub.subscribe("SELECT 1", TABLES) for _ in range(50)]
        assert hub.evaluations == 1
        for sub in subs:
            (snapshot,) = await sub.next()
            assert snapshot["event"] == "snapshot" and snapshot["rows"] == [["bert", 1]]
        table.rows = [("bert", 2), ("gpt2", 1)]
        hub.note_commit({"models"}, {"peerB"})
        hub.note_commit({"hardware_platforms"}, {"peerC"})  # not read by the query
        await trio.testing.wait_all_tasks_blocked()
        assert hub.evaluations == 2
        for sub in subs:
            changed, added = await sub.next()
            assert changed == {"event": "changed", "row": ["bert", 2], "old": ["bert", 1],
                               "origins": ["peerB"], "db_cid": "bafy"}  # fmt: skip
            assert added["event"] == "added" and added["row"] == ["gpt2", 1]
        for sub in subs:
            hub.unsubscribe(sub)
        assert hub.queries == {}
        nursery.cancel_scope.cancel()


async def test_a_slow_subscriber_is_told_it_lagged_and_gets_a_fresh_snapshot() -> None:
    table = Table()
    hub = Hub(table.evaluate)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.serve)
        slow = await hub.subscribe("SELECT 1", TABLES)
        fast = await hub.subscribe("SELECT 1", TABLES)
        await slow.next()
        await fast.next()
        for i in range(1200):  # more changes than a buffer holds, none read by ``slow``
            table.rows = [(f"m{i}", i)]
            hub.note_commit({"models"}, {"peerB"})
            await trio.testing.wait_all_tasks_blocked()
            await fast.next()  # ``fast`` keeps up and is never told it lagged
        lagged, snapshot = await slow.next()
        assert lagged["event"] == "lagged" and lagged["dropped"] > 0
        assert snapshot == {"event": "snapshot", "columns": ["model_id", "n"],
                            "rows": [["m1199", 1199]], "db_cid": "bafy"}  # fmt: skip
        nursery.cancel_scope.cancel()


async def test_a_commit_during_the_first_evaluation_is_not_missed() -> None:
    table = Table()
    gate = trio.Event()

    async def slow_first(sql: str) -> Result:
        result = Result(["model_id", "n"], list(table.rows), "bafy")
        await gate.wait()
        return result

    hub = Hub(slow_first)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.serve)
        subs: list[object] = []

        async def subscribe() -> None:
            subs.append(await hub.subscribe("SELECT 1", TABLES))

        nursery.start_soon(subscribe)
        await trio.testing.wait_all_tasks_blocked()
        table.rows = [("bert", 9)]  # committed while the first evaluation runs
        hub.note_commit({"models"}, {"peerB"})
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        (sub,) = subs
        events = await sub.next()  # type: ignore[attr-defined]
        assert [e["event"] for e in events] == ["snapshot", "changed"]
        assert events[-1]["row"] == ["bert", 9]
        nursery.cancel_scope.cancel()
