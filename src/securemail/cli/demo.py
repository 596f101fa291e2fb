"""``securemail demo``: a local federation of real gateway nodes exchanging real mail.

The operator founds a federation and admits four members; three gateway nodes (an agency,
a mail service provider, and a gateway service provider hosting a business) start on
loopback ports; scripted messages go in over SMTP and each hop is printed from the nodes'
own queue events. ``--check`` exits 0 only if every scripted message had the promised
outcome; without it the federation keeps running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail import logbook
from securemail.config.node import load_config
from securemail.demo.exchange import SCRIPTS, Script, header, submit, wait_for
from securemail.demo.federation import AGENCY, MSP, OPERATOR, ORGS, PEOPLE, NodeSetup, found
from securemail.demo.mailbox import KEYWORD, read_inbox
from securemail.errors import SecureMailError
from securemail.node.run import serve
from securemail.queue import QueueStore


def _step(text: str) -> None:
    click.secho(f"\n▶ {text}", bold=True)


def _say(text: str, ok: bool = True) -> None:
    click.echo(f"  {'✓' if ok else '✗'} {text}")


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the federation, nodes, queues and mailboxes here (must be empty or new).",
)
@click.option("--check", is_flag=True, help="Run the script, stop, and exit non-zero on a miss.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait per message.")
def demo(workdir: Path | None, check: bool, timeout: float) -> None:
    """Run a local SecureMail federation and send real signed, encrypted mail through it."""
    with tempfile.TemporaryDirectory(prefix="securemail-demo-") as tmp:
        root = (workdir or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise click.UsageError(f"{root} is not empty")
        try:
            failures = asyncio.run(_run(root, check, timeout))
        except SecureMailError as error:
            click.secho(f"\ndemo failed: {error}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\nStopped: the nodes finished what they held and shut down.")
            return
    if failures:
        click.secho(f"\n{len(failures)} promise(s) not kept:", fg="red", err=True)
        for failure in failures:
            click.echo(f"  - {failure}", err=True)
        sys.exit(1)
    click.secho("\nEvery scripted message had the promised outcome.", fg="green")


async def _run(root: Path, check: bool, timeout: float) -> list[str]:
    passphrase = root / "passphrase.txt"
    passphrase.write_text(secrets.token_urlsafe(24) + "\n")
    passphrase.chmod(0o600)
    _step("The federation operator founds a federation and admits four members")
    nodes = found(root, passphrase, datetime.now(UTC))
    for org in ORGS:
        _say(f"{org.name}: {org.domain} on the {org.node} gateway node")
    _say("directory signed and published; every node verifies it against the federation CA")
    stop = asyncio.Event()
    tasks = await _start(nodes, stop)
    try:
        failures = await _exchange(nodes, timeout)
        failures += await _read_mailbox(nodes[MSP])
        if not check:
            _explain(root, nodes)
            with contextlib.suppress(asyncio.CancelledError):
                await _forever()
        return failures
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read_mailbox(node: NodeSetup) -> list[str]:
    """The citizen opens her mail client: IMAP, STARTTLS, login, the verified messages."""
    assert node.clients is not None  # noqa: S101 (the provider's node takes logins)
    person = next(iter(PEOPLE))
    _step(f"{PEOPLE[person]} reads her mailbox over IMAP (STARTTLS, then login)")
    try:
        seen = await asyncio.to_thread(read_inbox, node.clients, person)
    except (OSError, imaplib.IMAP4.error) as error:
        _say(f"IMAP: {error}", False)
        return [f"IMAP read for {person} failed: {error}"]
    for message in seen:
        _say(f"{message.subject}  [{' '.join(message.flags)}]")
        _say(f"  {message.status}")
    ok = len(seen) >= 2 and all(KEYWORD in m.flags for m in seen)
    _say(f"{len(seen)} messages carry the {KEYWORD} keyword clients can sort on", ok)
    return [] if ok else [f"IMAP: expected the verified messages with {KEYWORD}, saw {seen}"]


async def _forever() -> None:
    await asyncio.Event().wait()


async def _start(nodes: dict[str, NodeSetup], stop: asyncio.Event) -> list[asyncio.Task[None]]:
    _step("Three gateway nodes start on loopback ports")
    ready = {name: asyncio.Event() for name in nodes}
    tasks = []
    for name, node in nodes.items():
        config = load_config(node.config)

        def mark(_: object, name: str = name) -> None:
            ready[name].set()

        tasks.append(asyncio.create_task(serve(config, stop=stop, ready=mark)))
    for name, event in ready.items():
        waiter = asyncio.create_task(event.wait())
        done, _ = await asyncio.wait([waiter, *tasks], timeout=60, return_when="FIRST_COMPLETED")
        if waiter not in done:
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise click.ClickException(f"node {name} did not start within 60 s")
        node = nodes[name]
        _say(
            f"{name}: peer listener 127.0.0.1:{node.peer_port} (STARTTLS required), "
            f"relay listener 127.0.0.1:{node.relay_port}"
        )
    return tasks


async def _exchange(nodes: dict[str, NodeSetup], timeout: float) -> list[str]:
    failures: list[str] = []
    now = datetime.now(UTC)
    for n, script in enumerate(SCRIPTS, start=1):
        _step(f"Message {n}: {script.title}")
        reply = await submit(nodes[script.node], script, script.message(n, now))
        door = "logged in to submission" if script.login else "relay listener"
        _say(f"{script.mail_from} -> {', '.join(script.to)} via {script.node} ({door}): {reply}")
        failures += await _outcome(nodes, script, n, reply, timeout)
    return failures


async def _outcome(
    nodes: dict[str, NodeSetup], script: Script, n: int, reply: str, timeout: float
) -> list[str]:
    domain = (script.author or script.mail_from).rpartition("@")[2]
    message_id = Script.message_id(n, domain)
    if script.expect == "refused-at-rcpt":
        ok = reply.startswith("550")
        _say("refused at RCPT: not a member and no smarthost, so never sent in the clear", ok)
        return [] if ok else [f"message {n}: expected a 550 at RCPT, got {reply}"]
    if script.expect == "refused-at-data":
        ok = reply.startswith("553")
        author = script.author or script.mail_from
        _say(f"refused at submission: {script.mail_from} does not own {author}", ok)
        return [] if ok else [f"message {n}: expected 553 for a From: not owned, got {reply}"]
    if not reply.startswith("250"):
        return [f"message {n}: not accepted: {reply}"]
    if script.expect == "bounced":
        return await _bounced(nodes, script, n, message_id, timeout)
    failures = []
    for recipient in script.to:
        failures += await _delivered(nodes, script, n, recipient, message_id, timeout)
    if script.receipt:
        failures += await _receipted(nodes, script, n, message_id, timeout)
    _trail(nodes, message_id)
    return failures


async def _receipted(
    nodes: dict[str, NodeSetup], script: Script, n: int, message_id: str, timeout: float
) -> list[str]:
    """The sender asked for a receipt: the MDN with the receiving gateway's evidence."""
    mailbox = nodes[script.node].mailbox(script.mail_from)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for folder in ("new", "cur"):
            path = mailbox / folder
            for item in path.iterdir() if path.is_dir() else ():
                data = item.read_bytes()
                if b"report-type=disposition-notification" in data and message_id.encode() in data:
                    _say(f"signed receipt returned and checked; {script.mail_from} got the MDN")
                    return []
        await asyncio.sleep(0.1)
    _say("no signed receipt came back", False)
    return [f"message {n}: no receipt came back within {timeout:.0f} s"]


async def _delivered(
    nodes: dict[str, NodeSetup],
    script: Script,
    n: int,
    recipient: str,
    message_id: str,
    timeout: float,
) -> list[str]:
    node = nodes[_node_of(recipient)]
    found = await wait_for(node.mailbox(recipient), message_id, timeout)
    if found is None:
        _say(f"{recipient}: nothing arrived within {timeout:.0f} s", False)
        return [f"message {n}: not delivered to {recipient}"]
    status = header(found, "X-SecureMail-Status")
    problems = []
    if "verified" not in status or f"signer={script.signer}" not in status.replace(" ", ""):
        problems.append(f"status {status!r} does not name signer {script.signer}")
    if header(found, "Subject") != script.subject:
        problems.append("the protected Subject was not restored")
    _say(f"{recipient}: delivered to {node.name}'s Maildir; {status}", not problems)
    _say(f"Authentication-Results: {header(found, 'Authentication-Results')}")
    return [f"message {n} to {recipient}: {p}" for p in problems]


async def _bounced(
    nodes: dict[str, NodeSetup], script: Script, n: int, message_id: str, timeout: float
) -> list[str]:
    sender_node = nodes[script.node]
    notice = await _notice_for(sender_node.mailbox(script.mail_from), message_id, timeout)
    problems = []
    if notice is None:
        problems.append("no failure notice reached the sender")
    elif b"from-not-authorised" not in notice:
        problems.append("the failure notice does not give the reason code")
    target = nodes[_node_of(script.to[0])]
    if await wait_for(target.mailbox(script.to[0]), message_id, 1) is not None:
        problems.append("the forged message was delivered")
    author_domain = (script.author or script.mail_from).rpartition("@")[2]
    _say(
        f"refused before signing: {author_domain} is not {script.node}'s (from-not-authorised)",
        not problems,
    )
    _say(
        "the sender got a signed failure notice naming the reason; nothing was delivered",
        not problems,
    )
    return [f"message {n}: {p}" for p in problems]


async def _notice_for(mailbox: Path, message_id: str, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for folder in ("new", "cur"):
            path = mailbox / folder
            for item in path.iterdir() if path.is_dir() else ():
                data = item.read_bytes()
                if message_id.encode() in data and b"Undelivered" in data:
                    return data
        await asyncio.sleep(0.1)
    return None


def _node_of(address: str) -> str:
    domain = address.rpartition("@")[2]
    return next(o.node for o in ORGS if o.domain == domain)


def _trail(nodes: dict[str, NodeSetup], message_id: str) -> None:
    """Print the hops of ``message_id`` from every node's queue events, in time order."""
    hops = []
    for node in nodes.values():
        store = QueueStore.open(load_config(node.config).database)
        try:
            for entry in store.list():
                if entry.message_id == message_id:
                    for event in store.events(entry.id):
                        hops.append((event.time, node.name, entry.direction.value, event))
        finally:
            store.close()
    for time, name, direction, event in sorted(hops, key=lambda hop: hop[0]):
        who = f" {event.recipient}" if event.recipient else ""
        shown = logbook.shown_detail(event.event, event.detail)
        detail = f": {shown}" if shown else ""
        click.echo(
            f"      {time:%H:%M:%S.%f}"[:-3]
            + f" {name:<8} {direction:<8} {event.event}{who}{detail}"[:160]
        )


def _explain(root: Path, nodes: dict[str, NodeSetup]) -> None:
    _step("The federation keeps running (Ctrl-C stops it)")
    for node in nodes.values():
        click.echo(
            f"  {node.name}: relay listener 127.0.0.1:{node.relay_port}; mailboxes "
            f"{node.mail}; queue: securemail queue list --config {node.config}"
        )
    click.echo(f"  key passphrase (demo only): {root / 'passphrase.txt'}")
    click.echo(
        "  try: swaks --server 127.0.0.1:"
        f"{nodes['agency'].relay_port} --from aroha.ngata@agency.govt.nz "
        "--to hemi.walker@securemail.provider.nz"
    )

    _explain_logins(nodes)


def _explain_logins(nodes: dict[str, NodeSetup]) -> None:
    """Where people log in: webmail on the agency and the provider, mail clients at the MSP."""
    ca = load_config(nodes[AGENCY].config).anchor
    click.echo(f"\n  Webmail (certificates from the federation CA {ca}: a browser will warn)")
    for node in (nodes[AGENCY], nodes[MSP]):
        logins = node.officers or (node.clients.passwords if node.clients else {})
        if node.web_port is None:
            continue
        click.echo(f"    {node.name}: https://127.0.0.1:{node.web_port}/login")
        for address, password in logins.items():
            role = "  (also the operator console, /console)" if address == OPERATOR else ""
            click.echo(f"      {address}  password: {password}{role}")
    clients = nodes[MSP].clients
    if clients is not None:
        click.echo(f"\n  Mail clients for the {MSP}'s people: IMAP 127.0.0.1:{clients.imap_port}")
        click.echo(f"    STARTTLS; SMTP 127.0.0.1:{clients.submission_port} STARTTLS, then log in")
