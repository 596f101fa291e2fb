"""The node's records keeper: brings in the audit files and signs checkpoints on schedule.

The composition root (securemail.node.run) runs :func:`keep_records` beside its other
loops: it opens one :class:`RecordsKeeper` with the node's own signing identity and every
``[records] checkpoint_interval`` and once more at the node's stop, it copies new audit
file lines into the log (securemail.records.sources) and signs the head if it moved.

Security: the keeper holds the node's signing key in memory for the life of the process,
as the listeners hold the TLS key it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from securemail.config.node import NodeConfig
from securemail.records import checkpoint
from securemail.records.errors import RecordsError
from securemail.records.sources import bring_in
from securemail.smime import SignerIdentity
from securemail.smime.keys import load_certificate, load_private_key
from securemail.storage.engine import connect, transaction

log = logging.getLogger("securemail.records")


def node_signer(config: NodeConfig, passphrase: bytes) -> SignerIdentity:
    """The node's own signing identity: its ``[peer]`` certificate and key."""
    return SignerIdentity(
        load_certificate(config.tls_certificate.read_bytes()),
        load_private_key(config.tls_key.read_bytes(), passphrase),
    )


def audit_files(config: NodeConfig) -> list[tuple[str, Path]]:
    """The node's audit files: accounts.log, and each organisation's key custody log."""
    found = [("accounts.log", config.data_dir / "accounts.log")]
    found += [(f"audit.log:{o.org_id}"[:64], o.keys / "audit.log") for o in config.organisations]
    return found


class RecordsKeeper:
    """Checkpoints the log of one node (thread-safe: each call is one transaction)."""

    def __init__(
        self,
        engine: Engine,
        signer: SignerIdentity,
        node: str,
        sources: Sequence[tuple[str, Path]] = (),
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._node = node
        self._sources = tuple(sources)

    @classmethod
    def open(cls, config: NodeConfig, passphrase: bytes) -> RecordsKeeper:
        """The keeper of the node ``config`` describes, signing with its own key."""
        signer = node_signer(config, passphrase)
        return cls(connect(config.database), signer, config.name, audit_files(config))

    def close(self) -> None:
        self._engine.dispose()

    def checkpoint(self, now: datetime, reason: str) -> checkpoint.Checkpoint | None:
        """Bring in the audit files, then sign the head if it moved; the new checkpoint."""
        for name, path in self._sources:
            try:
                with transaction(self._engine, "records sources", write=True) as conn:
                    bring_in(conn, name, path)
            except RecordsError as error:
                log.error("records: %s: %s", error.reason.value, error.detail)
        with transaction(self._engine, "records checkpoint", write=True) as conn:
            return checkpoint.take(conn, self._signer, self._node, now, reason)


async def run_checkpoints(
    keeper: RecordsKeeper,
    interval: float,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
) -> None:
    """Checkpoint every ``interval`` seconds until ``stop``, then once more."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            await _checkpoint(keeper, clock(), checkpoint.INTERVAL)
    await _checkpoint(keeper, clock(), checkpoint.SHUTDOWN)


async def _checkpoint(keeper: RecordsKeeper, now: datetime, reason: str) -> None:
    try:
        await asyncio.to_thread(keeper.checkpoint, now, reason)
    except Exception:  # a failed checkpoint must not stop the node; the next one retries
        log.exception("records: the %s checkpoint failed", reason)


async def keep_records(
    config: NodeConfig, passphrase: bytes, clock: Callable[[], datetime], stop: asyncio.Event
) -> None:
    """The node's records keeper for its whole run: checkpoints until ``stop``, then one
    more (the node awaits it before closing)."""
    keeper = await asyncio.to_thread(RecordsKeeper.open, config, passphrase)
    try:
        interval = config.records.checkpoint_interval.total_seconds()
        await run_checkpoints(keeper, interval, clock, stop)
    finally:
        keeper.close()
