"""A federation of real nodes on loopback for the gateway's end-to-end tests.

The demo's federation (four members on three nodes) is founded once per test module in a
temporary folder; each test starts the nodes it needs in its own event loop, with fresh
queues and mailboxes (the node folders are copied per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from securemail.config.node import NodeConfig, load_config
from securemail.demo.federation import NodeSetup, add_people, found
from securemail.node.run import serve
from securemail.queue import QueueError, QueueReason, QueueStore

WAIT = 60.0  # seconds: bounds a hang; three nodes starting on a loaded 2-core machine took >30


@dataclass(frozen=True)
class Federation:
    root: Path
    nodes: dict[str, NodeSetup]

    def config(self, name: str) -> NodeConfig:
        return load_config(self.nodes[name].config)


@pytest.fixture(scope="module")
def founded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    passphrase = root / "passphrase.txt"
    passphrase.write_text("node passphrase for the tests\n")
    yield Federation(root, found(root, passphrase, datetime.now(UTC)))


@pytest.fixture
def federation(founded: Federation, tmp_path: Path) -> Federation:
    """A copy of the founded federation with empty queues and mailboxes."""
    root = tmp_path / "fed"
    shutil.copytree(founded.root, root, symlinks=True)
    for node in founded.nodes.values():
        text = (root / node.config.relative_to(founded.root)).read_text()
        (root / node.config.relative_to(founded.root)).write_text(
            text.replace(str(founded.root), str(root))
        )
    nodes = {
        name: dataclasses.replace(
            node,
            config=root / node.config.relative_to(founded.root),
            mail=root / node.mail.relative_to(founded.root),
        )
        for name, node in founded.nodes.items()
    }
    return Federation(root, nodes)


def deliver_to_smtp_store(federation: Federation, node: str, port: int) -> None:
    """Point ``node``'s organisation(s) at an SMTP store on 127.0.0.1:``port`` (node.toml)."""
    config = federation.nodes[node].config
    text = config.read_text()
    maildir = re.compile(r'kind = "maildir"\npath = "mail"\n(accounts = true\n)?')
    assert maildir.search(text), text
    config.write_text(maildir.sub(f'kind = "smtp"\nhost = "127.0.0.1"\nport = {port}\n', text))


def open_people_accounts(federation: Federation, node: str) -> None:
    """Give the provider's people their accounts again in ``node``'s (new) database."""
    setup = federation.nodes[node]
    assert setup.clients is not None
    passphrase = federation.root.joinpath("passphrase.txt").read_bytes().strip()
    add_people(federation.config(node), passphrase, setup.clients.passwords)


def mailbox_files(path: Path) -> list[bytes]:
    """Every message in the Maildir at ``path`` (new and cur), as stored."""
    return [
        f.read_bytes() for d in ("new", "cur") if (path / d).is_dir() for f in (path / d).iterdir()
    ]


class Running:
    """Nodes started in the test's event loop; stop() one to simulate an outage."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.tasks: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    async def start(self, name: str) -> None:
        ready = asyncio.Event()
        stop = asyncio.Event()
        config = self.federation.config(name)
        task = asyncio.create_task(serve(config, stop=stop, ready=lambda _: ready.set()))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([waiter, task], timeout=WAIT, return_when="FIRST_COMPLETED")
        if task.done():
            task.result()  # raises what stopped it
        assert ready.is_set(), f"node {name} did not start"
        self.tasks[name] = (stop, task)

    async def stop(self, name: str) -> None:
        stop, task = self.tasks.pop(name)
        stop.set()
        await asyncio.wait_for(task, WAIT)

    async def close(self) -> None:
        for name in list(self.tasks):
            with contextlib.suppress(Exception):
                await self.stop(name)


@contextlib.asynccontextmanager
async def running(federation: Federation, *names: str) -> AsyncIterator[Running]:
    nodes = Running(federation)
    try:
        for name in names or tuple(federation.nodes):
            await nodes.start(name)
        yield nodes
    finally:
        await nodes.close()


def retry_now(federation: Federation, node: str, entry_id: str) -> None:
    """Make a deferred entry due now (as ``securemail queue retry`` does)."""
    store = QueueStore.open(federation.config(node).database)
    try:
        store.retry(entry_id, datetime.now(UTC))
    except QueueError as error:
        # The 2 s demo schedule may have made the entry active already: that try is as good.
        if error.reason is not QueueReason.BAD_STATE:
            raise
    finally:
        store.close()
