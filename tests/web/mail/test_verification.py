"""The verification verdict trusts only this node's gateway fields, and only under its seal."""

from __future__ import annotations

from securemail.deliver.seal import Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.directory import Directory
from securemail.marking import Verdict as Marked
from securemail.marking import mark_ordinary, mark_verified
from securemail.web.reading import header_fields
from securemail.web.verification import NOT_SEALED, NOT_VERIFIED, Trust, judge, own_copy
from securemail.web.verification import Verdict as WebVerdict
from tests.conftest import MESSAGE, NOW
from tests.web.mail.conftest import NODE

MARKED = Marked(NODE, "agency", "Agency", "alice@agency.govt.nz", "SENSITIVE", "sent")
KEYWORD = frozenset({SECUREMAIL_KEYWORD})


def verdict(
    message: bytes,
    directory: Directory | None,
    origin: Origin | None = Origin.DELIVERED,
    node: str = NODE,
    keywords: frozenset[str] = KEYWORD,
) -> WebVerdict:
    return judge(
        header_fields(message),
        node_name=node,
        origin=origin,
        keywords=keywords,
        directory=directory,
        received=NOW,
    )


def test_a_gateway_verified_message_is_verified(directory: Directory) -> None:
    """The gateway's fields plus the keyword give the signer's directory name and the label."""
    result = verdict(mark_verified(MESSAGE, MARKED), directory)
    assert result.verified and result.signer_name == "Test organisation agency"
    assert result.label == "SENSITIVE" and result.receipt == "sent"
    assert result.from_address == "alice@agency.govt.nz"


def test_without_the_seal_it_is_not_verified(directory: Directory) -> None:
    """The same header on a file without the gateway's seal (an IMAP APPEND) is unverified."""
    result = verdict(mark_verified(MESSAGE, MARKED), directory, origin=None)
    assert not result.verified and result.summary == NOT_SEALED and result.label is None
    assert result.state is Trust.NOT_VERIFIED and result.signer_org is None


def test_sealed_without_the_keyword_it_is_not_verified(directory: Directory) -> None:
    """Sealed delivered mail whose file lacks $SecureMail (the gateway did not verify it) is
    not verified, whatever its fields say."""
    result = verdict(mark_verified(MESSAGE, MARKED), directory, keywords=frozenset())
    assert not result.verified and result.summary == NOT_VERIFIED


def test_verified_fields_under_a_sent_or_notice_seal_are_not_verified(
    directory: Directory,
) -> None:
    """Only a seal of origin "delivered" lets the gateway's fields speak: a sent copy or a
    notice that somehow held them is said to be what its seal says, never verified."""
    marked = mark_verified(MESSAGE, MARKED)
    sent = verdict(marked, directory, origin=Origin.SENT)
    notice = verdict(marked, directory, origin=Origin.NOTICE)
    assert sent.state is Trust.SENT and not sent.verified and sent.signer_org is None
    assert notice.state is Trust.GATEWAY and notice.summary.startswith("Notice from")


def test_a_receipt_notice_is_said_to_be_a_receipt(directory: Directory) -> None:
    """The gateway's delivery receipt to the sender reads as a receipt from the gateway."""
    receipt = b"From: postmaster@agency.govt.nz\r\nSubject: SecureMail delivery receipt\r\n\r\nx"
    result = verdict(receipt, directory, origin=Origin.NOTICE)
    assert result.summary == f"Receipt from your SecureMail gateway {NODE}"


def test_an_unsealed_copy_of_mail_sent_is_neither_green_nor_red(directory: Directory) -> None:
    """A mail program's Sent copy of mail the gateway sent is its own state; a sealed
    message keeps its verdict."""
    copy = own_copy(verdict(MESSAGE, directory, origin=None))
    assert copy.state is Trust.OWN_COPY and not copy.verified
    sealed = own_copy(verdict(MESSAGE, directory))
    assert sealed.state is Trust.NOT_VERIFIED and sealed.summary == NOT_VERIFIED


def test_another_nodes_results_are_not_trusted(directory: Directory) -> None:
    """Fields written by another authserv-id (another node) are not this node's word."""
    result = verdict(mark_verified(MESSAGE, MARKED), directory, node="gw.other.govt.nz")
    assert not result.verified


def test_a_from_changed_after_verification_is_not_verified(directory: Directory) -> None:
    """If the From: no longer matches the header.from the gateway checked, it is unverified."""
    changed = mark_verified(MESSAGE, MARKED).replace(
        b"From: Alice Example <alice@", b"From: Alice Example <mallory@"
    )
    assert not verdict(changed, directory).verified


def test_ordinary_mail_claiming_a_label_shows_the_claim_and_warning(directory: Directory) -> None:
    """Outside mail with a marking is unverified; its claim and the gateway warning are kept."""
    claimed = MESSAGE.replace(
        b"Subject: Budget figures for review", b"Subject: Budget [SEC=RESTRICTED]"
    )
    result = verdict(mark_ordinary(claimed, NODE), directory)
    assert not result.verified and result.label is None and result.summary == NOT_VERIFIED
    assert result.claimed_label == "RESTRICTED" and result.warning is not None


def test_a_signer_missing_from_the_directory_is_named_by_id(directory: Directory) -> None:
    """A signer no longer in the directory is named by id, never by the header's name."""
    result = verdict(
        mark_verified(MESSAGE, Marked(NODE, "gone", "Fake Name", "alice@agency.govt.nz")), directory
    )
    assert result.verified and result.signer_name is None and "Fake Name" not in result.summary
