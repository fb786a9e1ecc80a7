"""Reading (and, for tests of revocation bookkeeping, changing) the site database's token rows from a test.

These queries serve only tests, so they live here rather than in ``mock_site.db``; they open the database file with a
connection of their own (the file is in WAL mode, so this never blocks the site's writer).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, timeout=10.0)


def tokens_issued(path: Path, token_type: str | None = None) -> int:
    """How many tokens the site recorded, all of them or of one type."""
    conn = _connect(path)
    try:
        if token_type is None:
            return int(conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])
        return int(conn.execute("SELECT COUNT(*) FROM tokens WHERE token_type = ?", (token_type,)).fetchone()[0])
    finally:
        conn.close()


def is_revoked(path: Path, jti: str) -> bool:
    """Whether the token is marked revoked; a token the site never recorded is not revoked."""
    conn = _connect(path)
    try:
        row = conn.execute("SELECT revoked FROM tokens WHERE jti = ?", (jti,)).fetchone()
        return bool(row and row[0])
    finally:
        conn.close()


def revoke_tokens_before(path: Path, t: float) -> int:
    """Mark every token issued before ``t`` (epoch seconds) revoked; returns how many were newly revoked."""
    conn = _connect(path)
    try:
        return conn.execute("UPDATE tokens SET revoked = 1 WHERE issued_at < ? AND revoked = 0", (float(t),)).rowcount
    finally:
        conn.close()
