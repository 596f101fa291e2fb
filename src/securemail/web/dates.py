"""Dates as people read them: in their time zone (New Zealand's by default), never raw UTC.

Every date the webmail shows goes through :func:`when` (a full date and time, for a message
or a delivery step) or :func:`when_short` (the message list: the time for today's mail, the
day and month this year, with the year before that). A Date: field is parsed with the
standard library's RFC 5322 parser; a field it cannot read is shown as written (it is the
sender's claim, not ours), never an error. Templates use them as the filters ``when`` and
``when_short`` (registered in :mod:`securemail.web.app`); the ``datetime`` attribute of a
``<time>`` element keeps the exact UTC instant. The filters read the zone from the page's
``zone`` value, which :func:`securemail.web.app.render` sets from the signed-in account's
own time zone (:func:`zone_named`).
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = ZoneInfo("Pacific/Auckland")


def zone_named(name: str | None) -> ZoneInfo:
    """The zone an account chose (an IANA name), or New Zealand time when it chose none."""
    if not name:
        return DEFAULT_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return DEFAULT_ZONE  # a zone the system no longer has: never an error page


def instant(value: datetime | str | None) -> datetime | None:
    """``value`` as an aware datetime (a Date: field parsed; naive taken as UTC), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        value = parsed
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def when(value: datetime | str | None, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """``Sun 29 Nov 2026, 9:05 am`` in ``zone``; an unreadable Date: as written."""
    moment = instant(value)
    if moment is None:
        return value if isinstance(value, str) else ""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y}, {_clock(local)}"


def when_short(
    value: datetime | str | None, zone: ZoneInfo = DEFAULT_ZONE, *, now: datetime | None = None
) -> str:
    """``9:05 am`` today, ``29 Nov`` this year, ``29 Nov 2025`` before (all in ``zone``)."""
    moment = instant(value)
    if moment is None:
        return value if isinstance(value, str) else ""
    local = moment.astimezone(zone)
    today = (now or datetime.now(UTC)).astimezone(zone)
    if local.date() == today.date():
        return _clock(local)
    if local.year == today.year:
        return f"{local.day} {local:%b}"
    return f"{local.day} {local:%b %Y}"


def iso(value: datetime | str | None) -> str:
    """The exact instant in UTC for ``<time datetime>``, or "" when unknown."""
    moment = instant(value)
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def _clock(local: datetime) -> str:
    hour = local.hour % 12 or 12
    return f"{hour}:{local:%M} {'am' if local.hour < 12 else 'pm'}"


def person(field: str) -> str:
    """Who a From:/To: field names, shortly: the display names, else the addresses."""
    found = email.utils.getaddresses([field])
    named = [name or address for name, address in found if name or address]
    return ", ".join(named) or field
