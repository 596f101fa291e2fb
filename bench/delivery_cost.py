"""CPU a Maildir delivery costs the receiving node: MaildirTarget with accounts, one process.

``python bench/delivery_cost.py [--count N] [--concurrency C]`` delivers N different 4 KiB
messages (the SecureMail keyword, so into cur/ as the inbound worker does) to one account's
mailbox on SQLite, C at a time (as the inbound worker's entries in hand), and prints the
process's user + system CPU per delivery. Keys are passed as FRESH where the target takes
them (the inbound worker's first attempt). Run it with another tree's src on PYTHONPATH to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import resource
import secrets
import tempfile
from pathlib import Path
from typing import Any

from securemail.accounts.node import open_accounts
from securemail.deliver import MaildirTarget

DOMAIN = "provider.example.nz"
RCPT = f"hemi@{DOMAIN}"
BODY = (b"From: a@agency.example.nz\r\nSubject: x\r\n\r\n" + b"y" * 76 + b"\r\n") * 52


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def deliver_all(target: MaildirTarget, count: int, concurrency: int) -> float:
    takes_fresh = "fresh" in inspect.signature(target.deliver).parameters
    keywords = frozenset({"$SecureMail"})

    async def one() -> None:
        extra: dict[str, Any] = {"fresh": {RCPT}} if takes_fresh else {}  # older trees: none
        key = secrets.token_hex(32)
        replies = await target.deliver(
            "a@agency.example.nz", [RCPT], BODY, key, keywords=keywords, **extra
        )
        assert replies[RCPT].code == 250, replies

    await one()  # warm-up: the mailbox and the keywords file exist
    start = cpu()
    for _ in range(count // concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return (cpu() - start) / (count // concurrency * concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        (root / "mail").mkdir()
        with open_accounts(
            f"sqlite:///{root / 'node.db'}",
            log_path=root / "accounts.log",
            passphrase=b"bench passphrase",
            domains=[DOMAIN],
        ) as accounts:
            accounts.service.add(RCPT, "correct horse battery staple delivery")
            target = MaildirTarget(root / "mail", accounts=accounts.mailboxes)
            per = asyncio.run(deliver_all(target, args.count, args.concurrency))
    print(f"{args.count} deliveries, {args.concurrency} at a time: {per * 1000:.3f} ms CPU each")


if __name__ == "__main__":
    main()
