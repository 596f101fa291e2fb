"""Loads bench/sql_counter.py into every Python process started with this folder on its
path and ``SECUREMAIL_SQL_COUNT`` set (the nodes of ``gateway_bench.py --count-sql``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_WHERE = os.environ.get("SECUREMAIL_SQL_COUNT")
if _WHERE:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sql_counter

    sql_counter.install(Path(_WHERE))
