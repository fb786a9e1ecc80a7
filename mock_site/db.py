"""The site database: onboarded tenants, registered clients and issued tokens, kept in one SQLite file (WAL)."""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from cmg_protocol.clock import Clock

SCHEMA_VERSION = 1
#: How long a write waits for another connection's (another worker process's) write transaction before failing.
BUSY_TIMEOUT_S = 10.0

#: Approval status the site gives a client registered with a Microsoft Entra identity ("Approval status 3").
APPROVAL_ENTRA = 3
#: Approval status the site gives a client registered with a PKI client certificate.
APPROVAL_PKI = 1  # synthetic: not the public ConfigMgr format (the real value depends on the site's approval setting)

AuthMethod = Literal["aad", "pki"]

# One statement per item: sqlite3's executescript() would commit on its own, outside our transaction.
_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE tenants (
        tenant_id     TEXT PRIMARY KEY,
        client_app_id TEXT NOT NULL,
        resource_uri  TEXT NOT NULL,
        onboarded     INTEGER NOT NULL
    )""",
    """CREATE TABLE clients (
        smsid           TEXT PRIMARY KEY,
        device_id       TEXT,
        tenant_id       TEXT,
        netbios_name    TEXT NOT NULL,
        fq_name         TEXT NOT NULL,
        auth            TEXT NOT NULL CHECK (auth IN ('aad', 'pki')),
        cert_thumbprint TEXT,
        approval_status INTEGER NOT NULL,
        first_seen      REAL NOT NULL,
        last_seen       REAL NOT NULL,
        registrations   INTEGER NOT NULL
    )""",
    # An Entra client is one device of one tenant, a PKI client one computer name with one certificate.
    "CREATE UNIQUE INDEX clients_aad_identity ON clients (tenant_id, device_id) WHERE auth = 'aad'",
    "CREATE UNIQUE INDEX clients_pki_identity ON clients (netbios_name COLLATE NOCASE, cert_thumbprint) WHERE auth = 'pki'",
    """CREATE TABLE tokens (
        jti        TEXT PRIMARY KEY,
        subject    TEXT NOT NULL,
        token_type TEXT NOT NULL,
        issued_at  REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked    INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX tokens_issued_at ON tokens (issued_at)",
)

# The certificates a client registered (signing, encryption), kept once per distinct certificate: simulated devices of
# one process share a certificate. Added after schema version 1, so created where missing rather than by a new version.
_CERTIFICATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS certificates (sha256 TEXT PRIMARY KEY, der BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS client_certificates (
        smsid      TEXT PRIMARY KEY,
        signing    TEXT NOT NULL REFERENCES certificates (sha256),
        encryption TEXT NOT NULL REFERENCES certificates (sha256)
    )""",
)

_CLIENT_COLUMNS = (
    "smsid, device_id, tenant_id, netbios_name, fq_name, auth, cert_thumbprint, approval_status, first_seen, last_seen, "
    "registrations"
)
# NetBIOS computer names: at most 15 characters, none of the reserved punctuation, no spaces.
_NETBIOS_NAME = re.compile(r"[^\s\\/:*?\"<>|.]{1,15}")
_MAX_CERTIFICATE_BYTES = 16 * 1024
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")


class SiteDataError(ValueError):
    """A value handed to the site database is unusable, or the file is not a site database; the message names it."""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A Microsoft Entra tenant the site knows, with the server app the clients ask tokens for."""

    tenant_id: str
    client_app_id: str
    resource_uri: str
    onboarded: bool


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered ConfigMgr client as the site database holds it."""

    smsid: str
    device_id: str | None
    tenant_id: str | None
    netbios_name: str
    fq_name: str
    auth: AuthMethod
    cert_thumbprint: str | None
    approval_status: int
    first_seen: float
    last_seen: float
    registrations: int


@dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of one registration request: the client's SMSID and whether this request created it."""

    smsid: str
    created: bool
    approval_status: int


def new_smsid(rng: random.Random) -> str:
    """A ConfigMgr client id ``GUID:<UPPER GUID>`` drawn from ``rng`` (uuid4 layout, so reproducible from a seed)."""
    return "GUID:" + str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def _guid(value: object, what: str) -> str:
    """The canonical lower-case form of a GUID, or SiteDataError naming the bad value."""
    if not isinstance(value, str):
        raise SiteDataError(f"{what} is not a GUID: {value!r}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise SiteDataError(f"{what} is not a GUID: {value!r}") from None


def _smsid(value: object) -> str:
    """The canonical ``GUID:<UPPER GUID>`` form of an SMSID, or SiteDataError naming the bad value."""
    if isinstance(value, str) and value[:5].upper() == "GUID:":
        try:
            return "GUID:" + str(uuid.UUID(value[5:])).upper()
        except ValueError:
            pass
    raise SiteDataError(f"SMSID is not of the form 'GUID:<guid>': {value!r}")


def _text(value: object, what: str, *, max_chars: int = 255, allow_empty: bool = False) -> str:
    """``value`` if it is a string of acceptable length, else SiteDataError naming it."""
    if not isinstance(value, str) or len(value) > max_chars or (not value and not allow_empty):
        raise SiteDataError(f"{what} must be a string of {0 if allow_empty else 1}..{max_chars} characters: {value!r}")
    return value


class SiteDatabase:
    """SQLite-backed site database; safe to call from several threads, and every change is committed before it returns."""

    def __init__(self, path: Path, *, clock: Clock, rng: random.Random | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        # SMSIDs must not repeat across restarts, so without an injected generator use the OS's randomness.
        self._rng = rng if rng is not None else random.SystemRandom()
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE), so nothing is left half-open.
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                     timeout=BUSY_TIMEOUT_S)
        self._inherited: list[sqlite3.Connection] = []
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise SiteDataError(f"{self.path} is not a usable site database: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    def reopen_after_fork(self) -> None:
        """Give a forked worker process its own connection (SQLite connections must not cross a fork).

        The inherited connection is kept referenced and never used or closed here: closing it could checkpoint or
        unlock on the parent's behalf. Writers in several processes take turns through ``BEGIN IMMEDIATE`` and the
        busy timeout; WAL lets readers run beside the one writer.
        """
        self._inherited.append(self._conn)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                     timeout=BUSY_TIMEOUT_S)
        self._setup()

    def _setup(self) -> None:
        conn = self._conn
        # WAL with synchronous=NORMAL: a commit is in the WAL file before commit returns, so a killed process loses
        # nothing (only a power cut could drop the last transactions, which this harness does not need to survive).
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            has_version = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not has_version:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                row = (SCHEMA_VERSION,)
            else:
                row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            found = None if row is None else row[0]
            raise SiteDataError(f"{self.path} has schema version {found!r}; this harness reads version {SCHEMA_VERSION}")
        with self._transaction():
            for statement in _CERTIFICATE_SCHEMA:
                conn.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; committed on success, rolled back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---- tenants -------------------------------------------------------------------------------------------------

    def onboard_tenant(self, tenant_id: str, client_app_id: str, resource_uri: str, onboarded: bool = True) -> TenantRecord:
        """Add or update a tenant and the server app (``AADCLIENTAPPID``, ``AADRESOURCEURI``) its clients use."""
        record = TenantRecord(
            tenant_id=_guid(tenant_id, "tenant id"),
            client_app_id=_guid(client_app_id, "client app id"),
            resource_uri=_text(resource_uri, "resource URI", max_chars=2048),
            onboarded=bool(onboarded),
        )
        if not urlsplit(record.resource_uri).scheme:
            raise SiteDataError(f"resource URI has no scheme: {resource_uri!r}")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO tenants (tenant_id, client_app_id, resource_uri, onboarded) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant_id) DO UPDATE SET client_app_id = excluded.client_app_id, "
                "resource_uri = excluded.resource_uri, onboarded = excluded.onboarded",
                (record.tenant_id, record.client_app_id, record.resource_uri, int(record.onboarded)),
            )
        return record

    def tenant(self, tenant_id: str) -> TenantRecord | None:
        """The tenant with this id, onboarded or not; None when the site has never heard of it."""
        rows = self._query(
            "SELECT tenant_id, client_app_id, resource_uri, onboarded FROM tenants WHERE tenant_id = ?",
            (_guid(tenant_id, "tenant id"),),
        )
        return TenantRecord(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None

    def tenants(self) -> list[TenantRecord]:
        """Every tenant the site knows, ordered by id."""
        rows = self._query("SELECT tenant_id, client_app_id, resource_uri, onboarded FROM tenants ORDER BY tenant_id")
        return [TenantRecord(r[0], r[1], r[2], bool(r[3])) for r in rows]

    # ---- clients -------------------------------------------------------------------------------------------------

    def register_client(
        self,
        *,
        device_id: str | None,
        tenant_id: str | None,
        netbios_name: str,
        fq_name: str,
        auth: AuthMethod = "aad",
        cert_thumbprint: str | None = None,
    ) -> Registration:
        """Register a client, or recognise it again: the same device always gets the same SMSID back."""
        device: str | None
        tenant: str | None
        if auth == "aad":
            device = _guid(device_id, "device id")
            tenant = _guid(tenant_id, "tenant id")
            thumbprint = None
            if cert_thumbprint is not None:
                raise SiteDataError(f"an Entra (aad) registration carries no certificate thumbprint: {cert_thumbprint!r}")
        elif auth == "pki":
            device = None if device_id is None else _guid(device_id, "device id")
            tenant = None if tenant_id is None else _guid(tenant_id, "tenant id")
            if not isinstance(cert_thumbprint, str) or not _THUMBPRINT.fullmatch(cert_thumbprint):
                raise SiteDataError(f"PKI registration needs a SHA-1 or SHA-256 hex certificate thumbprint: {cert_thumbprint!r}")
            thumbprint = cert_thumbprint.upper()
        else:
            raise SiteDataError(f"auth must be 'aad' or 'pki': {auth!r}")
        if not isinstance(netbios_name, str) or not _NETBIOS_NAME.fullmatch(netbios_name):
            raise SiteDataError(f"NetBIOS name must be 1..15 characters without spaces or \\/:*?\"<>|.: {netbios_name!r}")
        fq = _text(fq_name, "FQ name", allow_empty=True)
        approval = APPROVAL_ENTRA if auth == "aad" else APPROVAL_PKI
        now = self._clock()
        with self._transaction() as conn:
            if auth == "aad":
                existing = conn.execute(
                    "SELECT smsid, approval_status FROM clients WHERE auth = 'aad' AND tenant_id = ? AND device_id = ?",
                    (tenant, device),
                ).fetchone()
            else:
                existing = conn.execute(
                    "SELECT smsid, approval_status FROM clients "
                    "WHERE auth = 'pki' AND netbios_name = ? COLLATE NOCASE AND cert_thumbprint = ?",
                    (netbios_name, thumbprint),
                ).fetchone()
            if existing is not None:
                conn.execute(
                    "UPDATE clients SET last_seen = ?, registrations = registrations + 1, netbios_name = ?, fq_name = ? "
                    "WHERE smsid = ?",
                    (now, netbios_name, fq, existing[0]),
                )
                return Registration(existing[0], False, existing[1])
            smsid = self._unused_smsid(conn, self._rng)
            conn.execute(
                f"INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (smsid, device, tenant, netbios_name, fq, auth, thumbprint, approval, now, now),
            )
            return Registration(smsid, True, approval)

    @staticmethod
    def _unused_smsid(conn: sqlite3.Connection, rng: random.Random) -> str:
        # A seeded generator replays its sequence after a restart, so skip ids an earlier run already handed out.
        while True:
            smsid = new_smsid(rng)
            if conn.execute("SELECT 1 FROM clients WHERE smsid = ?", (smsid,)).fetchone() is None:
                return smsid

    def client(self, smsid: str) -> ClientRecord | None:
        """The client with this SMSID (``GUID:...``, any case), or None."""
        rows = self._query(f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE smsid = ?", (_smsid(smsid),))
        return ClientRecord(*rows[0]) if rows else None

    def client_by_device(self, tenant_id: str, device_id: str) -> ClientRecord | None:
        """The Entra-registered client of this tenant's device, or None."""
        rows = self._query(
            f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE auth = 'aad' AND tenant_id = ? AND device_id = ?",
            (_guid(tenant_id, "tenant id"), _guid(device_id, "device id")),
        )
        return ClientRecord(*rows[0]) if rows else None

    def count_clients(self) -> int:
        """How many clients are registered."""
        return int(self._query("SELECT COUNT(*) FROM clients")[0][0])

    def seed_clients(self, n: int, tenant_id: str, rng: random.Random) -> list[Registration]:
        """Pre-register ``n`` Entra clients of one tenant in one transaction, reproducibly from ``rng``.

        For each client the generator draws the device id, then the SMSID; running it again with the same seed on the
        same database finds the same devices and returns their registrations with ``created=False``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SiteDataError(f"number of clients to seed must be an integer >= 0: {n!r}")
        tenant = _guid(tenant_id, "tenant id")
        now = self._clock()
        results: list[Registration] = []
        with self._transaction() as conn:
            for _ in range(n):
                device = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                existing = conn.execute(
                    "SELECT smsid, approval_status FROM clients WHERE auth = 'aad' AND tenant_id = ? AND device_id = ?",
                    (tenant, device),
                ).fetchone()
                if existing is not None:
                    new_smsid(rng)  # drawn all the same, so a re-run walks the generator exactly as the first run did
                    results.append(Registration(existing[0], False, existing[1]))
                    continue
                smsid = self._unused_smsid(conn, rng)
                # synthetic: not the public ConfigMgr format (seeded computer names are ours)
                netbios = "SEED-" + device.replace("-", "")[:10].upper()
                conn.execute(
                    f"INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'aad', NULL, ?, ?, ?, 1)",
                    (smsid, device, tenant, netbios, netbios.lower() + ".seed.invalid", APPROVAL_ENTRA, now, now),
                )
                results.append(Registration(smsid, True, APPROVAL_ENTRA))
        return results

    # ---- registered certificates --------------------------------------------------------------------------------

    def set_client_certificates(self, smsid: str, signing_der: bytes, encryption_der: bytes) -> None:
        """Keep the signing and encryption certificates a registered client sent (replacing earlier ones)."""
        client = _smsid(smsid)
        for what, der in (("signing", signing_der), ("encryption", encryption_der)):
            if not isinstance(der, bytes) or not 0 < len(der) <= _MAX_CERTIFICATE_BYTES:
                raise SiteDataError(f"{what} certificate must be 1..{_MAX_CERTIFICATE_BYTES} bytes of DER")
        signing, encryption = hashlib.sha256(signing_der).hexdigest(), hashlib.sha256(encryption_der).hexdigest()
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM clients WHERE smsid = ?", (client,)).fetchone() is None:
                raise SiteDataError(f"no registered client {smsid!r}")
            conn.executemany("INSERT OR IGNORE INTO certificates (sha256, der) VALUES (?, ?)",
                             ((signing, signing_der), (encryption, encryption_der)))
            conn.execute("INSERT INTO client_certificates (smsid, signing, encryption) VALUES (?, ?, ?) "
                         "ON CONFLICT (smsid) DO UPDATE SET signing = excluded.signing, encryption = excluded.encryption",
                         (client, signing, encryption))

    def client_certificates(self, smsid: str) -> tuple[bytes, bytes] | None:
        """The (signing, encryption) certificates the client registered, as DER; None when it registered none."""
        rows = self._query(
            "SELECT s.der, e.der FROM client_certificates c JOIN certificates s ON s.sha256 = c.signing "
            "JOIN certificates e ON e.sha256 = c.encryption WHERE c.smsid = ?", (_smsid(smsid),))
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    # ---- tokens --------------------------------------------------------------------------------------------------

    def record_token(self, jti: str, subject: str, token_type: str, issued_at: float, expires_at: float) -> None:
        """Remember a token the site issued (``subject``: the SMSID or Entra device id it was issued to)."""
        _text(jti, "token id (jti)", max_chars=128)
        _text(subject, "token subject", max_chars=128)
        _text(token_type, "token type", max_chars=32)
        if not expires_at >= issued_at:
            raise SiteDataError(f"token {jti!r} expires ({expires_at!r}) before it is issued ({issued_at!r})")
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO tokens (jti, subject, token_type, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (jti, subject, token_type, float(issued_at), float(expires_at)),
                )
        except sqlite3.IntegrityError:
            raise SiteDataError(f"token id (jti) already recorded: {jti!r}") from None

    # ---- lifetime ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent); committed data stays in the file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
