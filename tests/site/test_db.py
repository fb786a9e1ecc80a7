"""The site database: tenants, idempotent client registration, tokens, and nothing lost across restarts or kills."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cmg_protocol.clock import FakeClock
from mock_site.db import (
    APPROVAL_ENTRA,
    APPROVAL_PKI,
    SCHEMA_VERSION,
    SiteDatabase,
    SiteDataError,
    TenantRecord,
)
from tests.site import token_rows

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
OTHER_TENANT = "2ca9a796-a1a6-43ec-88f1-5935b32155c5"
APP = "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b"
DEVICE = "c66ee0fd-08e7-4b38-b282-7e6954b71139"
OTHER_DEVICE = "0f1e2d3c-4b5a-4978-8877-665544332211"
THUMBPRINT = "a1" * 20


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[SiteDatabase]:
    database = SiteDatabase(tmp_path / "site.db", clock=clock, rng=random.Random(1))
    yield database
    database.close()


def register(db: SiteDatabase, device: str = DEVICE, tenant: str = TENANT, name: str = "DESKTOP-01"):
    return db.register_client(device_id=device, tenant_id=tenant, netbios_name=name, fq_name=f"{name}.contoso.com")


def test_registering_the_same_device_twice_returns_the_same_smsid(db: SiteDatabase, clock: FakeClock) -> None:
    """A device that registers again gets its SMSID back, marked not created, and its counters move."""
    first = register(db)
    clock.advance(60)
    second = register(db)
    assert second.smsid == first.smsid
    assert (first.created, second.created) == (True, False)
    record = db.client(first.smsid)
    assert record is not None
    assert record.registrations == 2
    assert (record.first_seen, record.last_seen) == (1_700_000_000.0, 1_700_000_060.0)
    assert db.count_clients() == 1


def test_a_device_id_given_in_other_case_is_the_same_device(db: SiteDatabase) -> None:
    """Device and tenant GUIDs are compared in canonical form, whatever case the caller used."""
    first = register(db)
    again = register(db, device=DEVICE.upper(), tenant=TENANT.upper())
    assert again.smsid == first.smsid


@pytest.mark.parametrize(
    ("device", "tenant"),
    [(OTHER_DEVICE, TENANT), (DEVICE, OTHER_TENANT)],
    ids=["other-device", "same-device-other-tenant"],
)
def test_another_device_or_tenant_is_another_client(db: SiteDatabase, device: str, tenant: str) -> None:
    """Entra clients are identified by tenant and device together."""
    first = register(db)
    other = register(db, device=device, tenant=tenant)
    assert other.created
    assert other.smsid != first.smsid
    assert db.count_clients() == 2


def test_smsid_is_an_upper_case_guid_with_prefix(db: SiteDatabase) -> None:
    """SMSIDs look like the ones ConfigMgr logs show: ``GUID:`` and an upper-case GUID."""
    smsid = register(db).smsid
    assert smsid.startswith("GUID:")
    assert smsid[5:] == smsid[5:].upper()
    assert len(smsid) == 5 + 36


def test_smsids_are_reproducible_from_the_injected_random(tmp_path: Path, clock: FakeClock) -> None:
    """Two databases with equally seeded generators hand out the same SMSIDs."""
    smsids = []
    for name in ("a.db", "b.db"):
        with SiteDatabase(tmp_path / name, clock=clock, rng=random.Random(42)) as database:
            smsids.append([register(database, device=d).smsid for d in (DEVICE, OTHER_DEVICE)])
    assert smsids[0] == smsids[1]
    assert smsids[0][0] != smsids[0][1]


def test_a_replayed_seed_after_restart_does_not_reuse_an_smsid(tmp_path: Path, clock: FakeClock) -> None:
    """A restarted site with the same seed skips SMSIDs the earlier run already handed out."""
    path = tmp_path / "site.db"
    with SiteDatabase(path, clock=clock, rng=random.Random(3)) as database:
        first = register(database)
    with SiteDatabase(path, clock=clock, rng=random.Random(3)) as database:
        second = register(database, device=OTHER_DEVICE)
        assert second.smsid != first.smsid
        assert database.count_clients() == 2


def test_approval_status_depends_on_the_registration_method(db: SiteDatabase) -> None:
    """Entra registrations get approval status 3, PKI registrations the PKI value."""
    entra = register(db)
    pki = db.register_client(
        device_id=None, tenant_id=None, netbios_name="SERVER01", fq_name="server01.contoso.com", auth="pki",
        cert_thumbprint=THUMBPRINT,
    )
    assert (entra.approval_status, pki.approval_status) == (APPROVAL_ENTRA, APPROVAL_PKI)
    assert db.client(pki.smsid).auth == "pki"


@pytest.mark.parametrize(
    ("name", "thumbprint", "same"),
    [("server01", THUMBPRINT.upper(), True), ("SERVER01", "b2" * 20, False), ("SERVER02", THUMBPRINT, False)],
    ids=["name-case-and-thumbprint-case-ignored", "new-certificate", "other-name"],
)
def test_pki_clients_are_identified_by_name_and_certificate(
    db: SiteDatabase, name: str, thumbprint: str, same: bool
) -> None:
    """A PKI client is the same client only with the same NetBIOS name and certificate thumbprint."""
    first = db.register_client(
        device_id=None, tenant_id=None, netbios_name="SERVER01", fq_name="", auth="pki", cert_thumbprint=THUMBPRINT
    )
    again = db.register_client(
        device_id=None, tenant_id=None, netbios_name=name, fq_name="", auth="pki", cert_thumbprint=thumbprint
    )
    assert (again.smsid == first.smsid) is same
    assert again.created is not same


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tenant_id": "not-a-guid"}, "not-a-guid"),
        ({"device_id": "12345"}, "12345"),
        ({"device_id": None}, "None"),
        ({"netbios_name": "A-NAME-LONGER-THAN-15"}, "A-NAME-LONGER-THAN-15"),
        ({"netbios_name": "HAS SPACE"}, "HAS SPACE"),
        ({"auth": "kerberos"}, "kerberos"),
        ({"cert_thumbprint": THUMBPRINT}, THUMBPRINT),
        ({"auth": "pki", "cert_thumbprint": "zz"}, "zz"),
        ({"auth": "pki", "cert_thumbprint": None}, "None"),
    ],
)
def test_bad_registration_values_raise_naming_the_value(db: SiteDatabase, changes: dict, named: str) -> None:
    """Unusable registration values raise a ValueError whose message names the value."""
    values = {"device_id": DEVICE, "tenant_id": TENANT, "netbios_name": "DESKTOP-01", "fq_name": "d.contoso.com"}
    values.update(changes)
    with pytest.raises(SiteDataError) as excinfo:
        db.register_client(**values)
    assert named in str(excinfo.value)
    assert db.count_clients() == 0


def test_client_by_device_finds_the_registered_client(db: SiteDatabase) -> None:
    """The MP can find a client from its tenant and Entra device id."""
    smsid = register(db).smsid
    found = db.client_by_device(TENANT, DEVICE.upper())
    assert found is not None and found.smsid == smsid
    assert db.client_by_device(OTHER_TENANT, DEVICE) is None


def test_client_lookup_accepts_any_case_and_rejects_non_smsids(db: SiteDatabase) -> None:
    """``client`` finds an SMSID written in lower case and refuses strings that are not SMSIDs."""
    smsid = register(db).smsid
    assert db.client(smsid.lower()).smsid == smsid
    with pytest.raises(ValueError, match="not-an-id"):
        db.client("not-an-id")


def test_onboarded_tenants_are_listed_and_updated(db: SiteDatabase) -> None:
    """Onboarding stores the tenant's server app; onboarding again updates it in place."""
    db.onboard_tenant(TENANT, APP, "https://ConfigMgrService")
    db.onboard_tenant(OTHER_TENANT, APP, "https://ConfigMgrService", onboarded=False)
    db.onboard_tenant(TENANT.upper(), APP, "api://other-resource")
    assert db.tenant(TENANT) == TenantRecord(TENANT, APP, "api://other-resource", True)
    assert [t.onboarded for t in db.tenants()] == [False, True]  # ordered by tenant id: 2ca9... before 9aaf...
    assert db.tenant("c8c82542-203c-4df9-9d86-cdd4dae67e0a") is None


@pytest.mark.parametrize(
    ("tenant", "app", "resource", "named"),
    [
        ("contoso.onmicrosoft.com", APP, "https://ConfigMgrService", "contoso.onmicrosoft.com"),
        (TENANT, "app", "https://ConfigMgrService", "'app'"),
        (TENANT, APP, "ConfigMgrService", "ConfigMgrService"),
    ],
)
def test_bad_tenant_values_raise_naming_the_value(db: SiteDatabase, tenant: str, app: str, resource: str, named: str) -> None:
    """A tenant id or app id that is not a GUID, or a resource that is not a URI, is refused by name."""
    with pytest.raises(ValueError) as excinfo:
        db.onboard_tenant(tenant, app, resource)
    assert named in str(excinfo.value)
    assert db.tenants() == []


def test_tokens_are_revoked_by_issue_time(db: SiteDatabase) -> None:
    """``revoke_tokens_before`` revokes exactly the tokens issued earlier than the cut-off."""
    db.record_token("old", "GUID:A", "Device", 100.0, 200.0)
    db.record_token("new", "GUID:B", "Device", 150.0, 250.0)
    assert not token_rows.is_revoked(db.path, "old")
    assert token_rows.revoke_tokens_before(db.path, 150.0) == 1
    assert [token_rows.is_revoked(db.path, jti) for jti in ("old", "new", "never-issued")] == [True, False, False]
    assert token_rows.revoke_tokens_before(db.path, 150.0) == 0


def test_tokens_issued_counts_all_or_one_type(db: SiteDatabase) -> None:
    """The issued-token count is available in total and per token type."""
    db.record_token("a", "GUID:A", "Device", 1.0, 2.0)
    db.record_token("b", "GUID:B", "UDA", 1.0, 2.0)
    db.record_token("c", "GUID:C", "Device", 1.0, 2.0)
    assert [token_rows.tokens_issued(db.path, *kind) for kind in ((), ("Device",), ("UDA",))] == [3, 2, 1]


@pytest.mark.parametrize(
    ("jti", "issued", "expires", "named"),
    [("dup", 1.0, 2.0, "dup"), ("", 1.0, 2.0, "''"), ("late", 5.0, 2.0, "late")],
    ids=["duplicate-jti", "empty-jti", "expires-before-issue"],
)
def test_bad_tokens_are_refused_naming_them(db: SiteDatabase, jti: str, issued: float, expires: float, named: str) -> None:
    """A duplicate or empty token id, or a token that expires before it is issued, is refused by name."""
    db.record_token("dup", "GUID:A", "Device", 1.0, 2.0)
    with pytest.raises(ValueError) as excinfo:
        db.record_token(jti, "GUID:A", "Device", issued, expires)
    assert named in str(excinfo.value)
    assert token_rows.tokens_issued(db.path) == 1


def test_seed_clients_is_reproducible_from_a_seed(tmp_path: Path, clock: FakeClock) -> None:
    """Two fresh databases seeded with the same generator seed hold the same fleet."""
    fleets = []
    for name in ("a.db", "b.db"):
        with SiteDatabase(tmp_path / name, clock=clock) as database:
            registrations = database.seed_clients(50, TENANT, random.Random(9))
            fleets.append([(r.smsid, database.client(r.smsid).device_id) for r in registrations])
            assert database.count_clients() == 50
    assert fleets[0] == fleets[1]
    assert len({smsid for smsid, _ in fleets[0]}) == 50


def test_seed_clients_again_with_the_same_seed_finds_the_same_fleet(db: SiteDatabase) -> None:
    """Re-seeding a database (a restarted site) returns the existing clients instead of adding new ones."""
    first = db.seed_clients(20, TENANT, random.Random(5))
    again = db.seed_clients(20, TENANT, random.Random(5))
    assert [r.smsid for r in again] == [r.smsid for r in first]
    assert all(r.created for r in first) and not any(r.created for r in again)
    assert db.count_clients() == 20


def test_seeded_clients_are_recognised_when_they_register(db: SiteDatabase) -> None:
    """A seeded device that then registers for real gets its seeded SMSID."""
    seeded = db.seed_clients(3, TENANT, random.Random(5))[1]
    record = db.client(seeded.smsid)
    again = register(db, device=record.device_id)
    assert (again.smsid, again.created) == (seeded.smsid, False)


@pytest.mark.parametrize("n", [-1, 2.5, "10"])
def test_seed_clients_refuses_a_bad_count(db: SiteDatabase, n: object) -> None:
    """The number of clients to seed must be a non-negative integer, named in the error."""
    with pytest.raises(ValueError, match=repr(n).replace(".", r"\.")):
        db.seed_clients(n, TENANT, random.Random(1))  # type: ignore[arg-type]


def test_reopening_the_file_keeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    """A database opened again on the same file sees tenants, clients and tokens of the earlier run."""
    path = tmp_path / "state" / "site.db"
    with SiteDatabase(path, clock=clock, rng=random.Random(1)) as database:
        database.onboard_tenant(TENANT, APP, "https://ConfigMgrService")
        smsid = register(database).smsid
        database.record_token("jti-1", smsid, "Device", 1.0, 2.0)
        token_rows.revoke_tokens_before(database.path, 5.0)
    with SiteDatabase(path, clock=clock, rng=random.Random(1)) as reopened:
        assert reopened.tenant(TENANT) is not None
        assert reopened.client(smsid) is not None
        assert token_rows.is_revoked(reopened.path, "jti-1")
        assert register(reopened).smsid == smsid


def test_the_file_uses_write_ahead_logging(db: SiteDatabase) -> None:
    """The file is in WAL mode, so readers never block the writer and a commit survives a kill."""
    with sqlite3.connect(db.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_registration_survives_a_kill_right_after_it_returns(tmp_path: Path) -> None:
    """A site process killed with SIGKILL just after ``register_client`` returned still has the client on restart."""
    path = tmp_path / "site.db"
    script = textwrap.dedent(
        f"""
        import os, random, signal, sys
        from pathlib import Path
        from mock_site.db import SiteDatabase
        db = SiteDatabase(Path({str(path)!r}), clock=lambda: 1.0, rng=random.Random(11))
        reg = db.register_client(device_id={DEVICE!r}, tenant_id={TENANT!r}, netbios_name="KILLED", fq_name="")
        sys.stdout.write(reg.smsid + "\\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    smsid = proc.stdout.strip()
    with SiteDatabase(path, clock=FakeClock()) as restarted:
        record = restarted.client(smsid)
    assert record is not None and record.netbios_name == "KILLED"


def test_concurrent_registrations_from_threads_are_all_kept(db: SiteDatabase) -> None:
    """Registrations from several threads at once neither fail nor get lost."""
    devices = [f"00000000-0000-4000-8000-{i:012d}" for i in range(80)]

    def work(part: list[str]) -> None:
        for device in part:
            register(db, device=device)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(work, devices[i::4]) for i in range(4)]:
            future.result()  # re-raises whatever a thread hit
    assert db.count_clients() == 80


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    """Opening something that is not SQLite raises a ValueError naming the file."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database file, just some text " * 50)
    with pytest.raises(ValueError, match="notes.db"):
        SiteDatabase(path, clock=FakeClock())


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A file written by a different schema version is refused rather than misread."""
    path = tmp_path / "site.db"
    SiteDatabase(path, clock=FakeClock()).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SiteDatabase(path, clock=FakeClock())


# ---- registered certificates ----------------------------------------------------------------------------------------

def test_registered_certificates_are_kept_and_replaced(db: SiteDatabase, tmp_path: Path, clock: FakeClock) -> None:
    """A client's signing and encryption certificates survive a reopen; a re-registration replaces them."""
    smsid = register(db).smsid
    assert db.client_certificates(smsid) is None
    db.set_client_certificates(smsid, b"sign-1", b"enc-1")
    assert db.client_certificates(smsid.lower()) == (b"sign-1", b"enc-1")
    db.set_client_certificates(smsid, b"sign-2", b"sign-2")
    db.close()
    with SiteDatabase(tmp_path / "site.db", clock=clock) as reopened:
        assert reopened.client_certificates(smsid) == (b"sign-2", b"sign-2")


def test_certificates_of_an_unknown_client_are_refused(db: SiteDatabase) -> None:
    with pytest.raises(SiteDataError, match="no registered client"):
        db.set_client_certificates("GUID:00000000-0000-0000-0000-000000000001", b"s", b"e")
    smsid = register(db).smsid
    with pytest.raises(SiteDataError, match="signing certificate must be"):
        db.set_client_certificates(smsid, b"", b"e")


def test_a_database_from_before_the_certificate_tables_gets_them(tmp_path: Path, clock: FakeClock) -> None:
    """A schema-1 file written before registered certificates were kept opens and gains the two tables."""
    path = tmp_path / "old.db"
    SiteDatabase(path, clock=clock).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE client_certificates")
        conn.execute("DROP TABLE certificates")
    with SiteDatabase(path, clock=clock, rng=random.Random(3)) as db:
        smsid = register(db).smsid
        db.set_client_certificates(smsid, b"s", b"e")
        assert db.client_certificates(smsid) == (b"s", b"e")


def _register_in_a_forked_process(db: SiteDatabase, first: int, count: int) -> None:
    db.reopen_after_fork()
    for number in range(first, first + count):
        register(db, device=f"00000000-0000-4000-8000-{number:012d}", name=f"FORKED-{number}")
    db.close()


def test_forked_worker_processes_write_through_their_own_connections(tmp_path: Path) -> None:
    """Worker processes forked from the site's process each reopen the database and register at once; every
    registration of every process is kept and the parent's own connection still works."""
    import multiprocessing

    database = SiteDatabase(tmp_path / "site.db", clock=FakeClock(), rng=random.Random(3))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_register_in_a_forked_process, args=(database, w * 50, 50)) for w in range(3)]
    for worker in workers:
        worker.start()
    register(database, device="00000000-0000-4000-8000-999999999999", name="PARENT")
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert database.count_clients() == 151
    database.close()


def test_registrations_of_several_processes_killed_mid_stream_all_survive(tmp_path: Path) -> None:
    """Several processes on one database (as a site's workers are) each register devices as fast as they can and are
    SIGKILLed while doing so: every registration one of them printed (returned from) is in the database afterwards."""
    path = tmp_path / "site.db"
    SiteDatabase(path, clock=FakeClock()).close()
    script = textwrap.dedent(
        f"""
        import sys, uuid
        from pathlib import Path
        from mock_site.db import SiteDatabase
        db = SiteDatabase(Path({str(path)!r}), clock=lambda: 1.0)
        while True:
            reg = db.register_client(device_id=str(uuid.uuid4()), tenant_id={TENANT!r}, netbios_name="KILLED",
                                     fq_name="")
            sys.stdout.write(reg.smsid + "\\n")
            sys.stdout.flush()
        """
    )
    writers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    confirmed: list[str] = []
    try:
        for writer in writers:  # each has registered at least a few before the kills
            assert writer.stdout is not None
            confirmed.extend(writer.stdout.readline().strip() for _ in range(5))
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
        for writer in writers:
            out, _ = writer.communicate(timeout=30)
            # a line cut short by the kill was never confirmed whole: only complete SMSIDs count
            confirmed.extend(line for line in out.splitlines() if line.startswith("GUID:") and len(line) == 41)
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    with SiteDatabase(path, clock=FakeClock()) as restarted:
        missing = [smsid for smsid in confirmed if restarted.client(smsid) is None]
    assert len(confirmed) >= 15 and missing == []
