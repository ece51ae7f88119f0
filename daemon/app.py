"""Wiring: open the store and the network, start every service in one nursery tree."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from functools import partial

import structlog
import trio
from libp2p.peer.id import ID

from daemon.config import Config, ConfigError, read_psk
from daemon.configcheck import preflight
from daemon.control.limits import ControlLimits
from daemon.control.peercred import make_authorizer
from daemon.control.registry import make_handlers
from daemon.control.server import serve_control
from daemon.distq import service as distq_service
from daemon.kg import methods as kg_methods
from daemon.monitor import service as monitor_service
from daemon.net import connmgr, gossip, membership, peerstatus, sync, warmup
from daemon.net.bootstrap import serve_bootstrap, serve_discovery
from daemon.net.gossipcheck import GossipCheck
from daemon.net.identity import load_or_create_identity
from daemon.net.network import open_network
from daemon.node import Node
from daemon.query import guard as query_guard
from daemon.query import prefetch, share
from daemon.query.limits import store_settings
from daemon.sdnotify import Notifier
from daemon.snapshot import prune as log_prune
from daemon.snapshot import service as snapshot_service
from daemon.store.database import Store
from daemon.store.signing import signer
from daemon.watch import service as watch_service
from daemon.web import service as web_service
from daemon.writes import cachetrim

log = structlog.get_logger("duckpeerd")


RELOADABLE = (
    "trusted_peers",
    "control_write_group",
    "announce_interval",
    "announce_cluster_rate",
    "anti_entropy_interval",
    "anti_entropy_max_interval",
    "connections_target",
    "connections_max",
    "member_timeout",
    "gossip_ban_seconds",
    "sync_read_timeout",
    "query_timeout",
    "query_max_rows",
    "query_max_result_bytes",
    "query_max_value_bytes",
    "query_memory_limit",
    "memory_margin",
    "conflicts",
    "monitor",  # alert rules, metric directions, sample interval (not the listener)
)


async def run_daemon(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """Run until SIGINT/SIGTERM; then stop services, finish the write in flight, close.

    SIGHUP calls ``reload`` and applies the reloadable settings (trusted peers, control
    write group, timers and query limits) without dropping connections.
    """
    make_authorizer(config.control_write_group)  # an unknown group is a config error now
    read_psk(config.psk_file)  # and so is an unreadable or malformed network key
    with preflight(config):  # holds the data dir until the daemon stops
        await _run(config, reload)


async def _run(config: Config, reload: Callable[[], Config] | None) -> None:
    key_pair = load_or_create_identity(config.data_dir)
    peer_id = str(ID.from_pubkey(key_pair.public_key))
    store = await trio.to_thread.run_sync(
        lambda: Store(config.db_path, settings=store_settings(config))
    )
    store.strategies = config.strategies()
    node = Node(config, store, peer_id, signer(key_pair))
    if config.trusted_peers:
        log.info("trusted peers only", count=len(config.trusted_peers))
    else:
        log.warning("OPEN CLUSTER: no trusted_peers configured; any peer that finds this "
                    "one can gossip, sync and write changesets here")  # fmt: skip
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope, node)
            if reload is not None:
                nursery.start_soon(_reload_on_sighup, node, reload)
            await _serve(node, key_pair)
    finally:
        await trio.to_thread.run_sync(store.close)
        log.info("stopped", peer=peer_id)


# Services of the capabilities: each ``serve(node, *, task_status)`` is started like the
# core services (``await nursery.start``) before the control socket opens.
FEATURE_SERVICES: tuple[Callable[..., Awaitable[None]], ...] = (
    query_guard.serve,
    kg_methods.serve,
    share.serve,
    prefetch.serve,
    snapshot_service.serve,
    log_prune.serve,
    peerstatus.serve,
    monitor_service.serve,
    distq_service.serve,
    watch_service.serve,
    web_service.serve,
    cachetrim.serve,
)


async def _serve(node: Node, key_pair: object) -> None:
    config = node.config
    async with open_network(
        key_pair,  # type: ignore[arg-type]
        config.listen,
        config.topic,
        mdns=config.mdns,
        psk=read_psk(config.psk_file),
        max_gossip_per_second=config.max_gossip_per_second,
        heartbeat=config.gossip_heartbeat,
        degree=config.gossip_degree,
        on_drop=lambda: node.metrics.inc("gossip_dropped"),
        connections_per_ip_per_second=config.connections_per_ip_per_second,
        on_refused=lambda: node.metrics.inc("connections_refused"),
    ) as network:
        node.network = network
        if not network.listen_addrs():
            raise ConfigError(f"config listen: could not listen on {', '.join(config.listen)}")
        network.set_validator(GossipCheck(node))
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.serve_sync, node)
            await nursery.start(gossip.serve_listener, node)
            await nursery.start(gossip.serve_announcer, node)
            await nursery.start(membership.serve, node)
            await nursery.start(connmgr.serve, node)
            await nursery.start(serve_bootstrap, node)
            await nursery.start(warmup.serve, node)
            if config.mdns:
                await nursery.start(serve_discovery, node)
            for service in FEATURE_SERVICES:
                await nursery.start(service, node)
            await nursery.start(
                partial(
                    serve_control,
                    config.socket_path,
                    make_handlers(node),
                    lambda: node.metrics.inc("control_malformed"),
                    authorize=lambda caller: make_authorizer(node.config.control_write_group)(
                        caller
                    ),
                    on_refused=lambda: node.metrics.inc("control_refused"),
                    limits=control_limits(config),
                )
            )
            log.info(
                "ready",
                peer=node.peer_id,
                listen=network.listen_addrs(),
                control=str(config.socket_path),
                db_cid=node.store.db_cid(),
                cluster=config.cluster,
            )
            # Only now: the store is open, the host listens, the control socket accepts.
            notifier = Notifier()
            notifier.notify("READY=1", _status_line(node))
            nursery.start_soon(notifier.serve_watchdog)
            nursery.start_soon(_serve_status, node, notifier)


def control_limits(config: Config) -> ControlLimits:
    """The control socket's bounds from the config."""
    return ControlLimits(
        max_frame=config.max_control_bytes,
        max_connections=config.control_max_connections,
        max_buffered=max(config.control_max_buffered_bytes, config.max_control_bytes),
        idle_timeout=config.control_idle_timeout,
        frame_timeout=config.control_frame_timeout,
    )


def _status_line(node: Node) -> str:
    return f"STATUS=peers {len(node.connected_peers())}, db {node.store.db_cid()}"


async def _serve_status(node: Node, notifier: Notifier) -> None:
    """Keep systemctl status current (peers and CID), at most every 2 s."""
    if not notifier.enabled:
        return
    while True:
        await node.wait_changed()
        notifier.notify(_status_line(node))
        await trio.sleep(2.0)


async def _stop_on_signal(scope: trio.CancelScope, node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutting down", signal=signal.Signals(signum).name)
            Notifier().notify("STOPPING=1")
            await gossip.announce_leaving(node)  # at most half a second
            scope.cancel()
            return


def _needs_restart(running: Config, fresh: Config) -> list[str]:
    """Keys that changed but only take effect after a restart."""
    return sorted(
        f.name
        for f in fields(fresh)
        if f.name not in RELOADABLE and getattr(fresh, f.name) != getattr(running, f.name)
    )


async def _reload_on_sighup(node: Node, reload: Callable[[], Config]) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                fresh = reload()
                make_authorizer(fresh.control_write_group)  # refuse an unknown group now
            except ConfigError as exc:
                log.error("reload refused, keeping the running config", error=str(exc))
                continue
            if restart := _needs_restart(node.config, fresh):
                log.warning("config reload: these keys take effect after a restart", keys=restart)
            node.config = replace(node.config, **{k: getattr(fresh, k) for k in RELOADABLE})
            node.store.strategies = node.config.strategies()  # future conflicts only
            log.info("config reloaded", trusted_peers=len(node.config.trusted_peers))
