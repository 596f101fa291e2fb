"""The holder's verifications on the account page, and withdrawing one from there.

The list comes from :mod:`securemail.web.confirmations` (the holder's Inbox and Sent);
Withdraw sends the same ``Withdraw <id>`` answer a mail client would, through the
webmail's submission path (signed, with the holder's sender assurance), so the agency's
register takes it as it takes any answer, and keeps a copy in Sent.

Security: a session and the CSRF token are needed; only a verification the holder's own
Sent shows as confirmed can be withdrawn, and only to the address that confirmation went to.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from securemail.access.model import Principal
from securemail.web import maildir_view as maildir
from securemail.web.auth import csrf_protect
from securemail.web.compose import ComposeError, Draft, build
from securemail.web.confirmations import confirmed_of
from securemail.web.context import web_context
from securemail.web.mailbox import as_received, sealing

router = APIRouter(prefix="/account", include_in_schema=False)
Posted = Annotated[Principal, Depends(csrf_protect)]


@router.post("/verifications/withdraw", name="account_withdraw")
async def withdraw(
    request: Request, principal: Posted, ident: Annotated[str, Form(max_length=64)]
) -> Response:
    """Send ``Withdraw <ident>`` to the organisation the holder confirmed it to."""
    web = web_context(request)
    found = next((c for c in await confirmed_of(web, principal) if c.id == ident), None)
    if found is None:
        return RedirectResponse("/account?withdrawn=unknown#verifications", status_code=303)
    draft = Draft(
        sender=principal.account.primary,
        to=(found.answer_to,),
        cc=(),
        subject=f"Withdraw {found.id}",
        body="I withdraw my confirmation of this address.\r\n",
    )
    try:
        composed = build(draft, account=principal.account, now=web.clock())
    except ComposeError:
        return RedirectResponse("/account?withdrawn=failed#verifications", status_code=303)
    reply = await web.admit(as_received(request, web, principal, composed))
    if reply.code >= 300:
        return RedirectResponse("/account?withdrawn=failed#verifications", status_code=303)
    root = web.maildir_for(principal.account.primary)
    assert root is not None  # noqa: S101 (confirmed_of found it)
    sent = await asyncio.to_thread(maildir.ensure_folder, root, maildir.SENT)
    await asyncio.to_thread(maildir.store, sent, composed.message, seal=sealing(web, principal))
    return RedirectResponse("/account?withdrawn=sent#verifications", status_code=303)
