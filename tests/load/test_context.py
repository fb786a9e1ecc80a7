"""Load options, the site manifest a Locust run reads, the shared run context, and the seeded fleet."""

from __future__ import annotations

import datetime
import json
import random
import time
from argparse import Namespace
from pathlib import Path

import pytest

from harness.client.device import FleetMix
from harness.client.transport import Crl, CrlUnavailable
from harness.fleet.seeded import SEED_CLIENTS_RNG_SEED, SeededFleet
from harness.load.context import CrlCache, LoadOptionError, LoadOptions, RunContext, load_site_manifest
from mock_site.db import SiteDatabase
from mock_site.testing import RunningSite

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"


def test_options_are_read_from_locust_parsed_options() -> None:
    """Every cmg-harness option arrives checked and typed."""
    options = LoadOptions.from_namespace(Namespace(site="x/site.json", fleet_mix="wpj_missing=0.25", fleet_seed="7",
                                                   devices_per_user=3, time_scale=60.0, results_dir="out",
                                                   fleet_workers=2))
    assert options == LoadOptions(site=Path("x/site.json"), fleet_mix=FleetMix(wpj_missing=0.25), fleet_seed=7,
                                  devices_per_user=3, time_scale=60.0, results_dir=Path("out"), fleet_workers=2)


def test_missing_options_take_their_defaults() -> None:
    """A namespace without our options (a bare Locust environment) gives the defaults."""
    assert LoadOptions.from_namespace(Namespace()) == LoadOptions()


@pytest.mark.parametrize(("name", "value", "named"), [
    ("fleet_mix", "wpj_missing=2", "--fleet-mix 'wpj_missing=2'"),
    ("devices_per_user", 0, "--devices-per-user"),
    ("devices_per_user", "many", "--devices-per-user"),
    ("fleet_workers", True, "--fleet-workers"),
    ("time_scale", -1.0, "--time-scale"),
])
def test_bad_options_are_refused_by_name(name: str, value: object, named: str) -> None:
    """An unusable option raises LoadOptionError naming the option and its value."""
    with pytest.raises(LoadOptionError, match=named) as caught:
        LoadOptions.from_namespace(Namespace(**{name: value}))
    assert repr(value)[:8] in str(caught.value) or str(value) in str(caught.value)


def test_a_chaos_schedules_device_shares_join_the_fleet_mix(tmp_path: Path) -> None:
    """--chaos adds its device shares to --fleet-mix (the schedule's share wins for a trait both name)."""
    schedule = tmp_path / "chaos.yaml"
    schedule.write_text("faults:\n  - {fault: wpj_missing, share: 0.3}\n"
                        "  - {fault: cp_disconnected, start: 5, duration: 2}\n")
    options = LoadOptions.from_namespace(Namespace(fleet_mix="wpj_missing=0.1,nocrlcheck=0.5", chaos=str(schedule)))
    assert options.fleet_mix == FleetMix(wpj_missing=0.3, nocrlcheck=0.5)
    assert options.chaos == schedule and options.schedule is not None
    assert [fault.name for fault in options.schedule.timed] == ["cp_disconnected"]


def test_a_bad_chaos_schedule_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    """An unknown fault in the schedule stops the run before it starts, naming file:line."""
    schedule = tmp_path / "chaos.yaml"
    schedule.write_text("faults:\n  - {fault: cp_disconnected, start: 1, duration: 2}\n  - {fault: gremlins}\n")
    with pytest.raises(LoadOptionError, match=f"--chaos: {schedule}:3: unknown fault 'gremlins'"):
        LoadOptions.from_namespace(Namespace(chaos=str(schedule)))


def test_a_missing_ca_file_is_refused_by_name(tmp_path: Path) -> None:
    """--ca-file must name a file."""
    with pytest.raises(LoadOptionError, match="--ca-file .*nope.pem"):
        LoadOptions.from_namespace(Namespace(ca_file=str(tmp_path / "nope.pem")))


def test_a_missing_manifest_is_named_with_the_way_to_make_one(tmp_path: Path) -> None:
    """Pointing --site at nothing says where it looked and how to start a site."""
    with pytest.raises(LoadOptionError, match="cmg-harness up") as caught:
        load_site_manifest(tmp_path / "site.json")
    assert str(tmp_path / "site.json") in str(caught.value)


def test_an_incomplete_manifest_names_what_it_lacks(tmp_path: Path) -> None:
    """A manifest without the CMG URL or the CA file cannot drive clients."""
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"cmg_url": "https://127.0.0.1:1", "role_id": "72186325152220500"}))
    with pytest.raises(LoadOptionError, match="field 'cmg_enabled' is missing"):
        load_site_manifest(path)


def test_run_context_builds_the_fleet_in_the_sites_onboarded_tenants(site: RunningSite) -> None:
    """Devices belong to tenants the site onboarded, and the CMG endpoints are the manifest's."""
    context = RunContext.from_options(Namespace(site=str(site.manifest_path), fleet_seed=3))
    try:
        onboarded = set(site.manifest.onboarded_tenant_ids)
        assert {context.fleet.device(i).tenant_id for i in range(40)} <= onboarded
        assert context.endpoints.cmg_url == site.manifest.cmg_url
    finally:
        context.close()


def test_a_host_given_to_locust_replaces_the_sites_cmg(site: RunningSite) -> None:
    """Pointing Locust at another host (a proxy under test) sends the clients there."""
    context = RunContext.from_options(Namespace(site=str(site.manifest_path)), cmg_url="https://127.0.0.9:8443")
    try:
        assert context.endpoints.cmg_url == "https://127.0.0.9:8443"
    finally:
        context.close()


def test_a_ca_file_replaces_the_site_ca_for_the_cmg_only(site: RunningSite, tmp_path: Path) -> None:
    """With --ca-file the CMG's certificate is checked against that CA; Entra ID still against the site CA."""
    import socket
    import ssl

    import trustme

    other_ca = tmp_path / "proxy-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    context = RunContext.from_options(Namespace(site=str(site.manifest_path), ca_file=str(other_ca)))
    def handshake(ctx: ssl.SSLContext, host: str, port: int) -> None:
        with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=host):
            pass

    try:
        endpoints = context.endpoints
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(context.trust.context(root_ca_present=True), endpoints.host, endpoints.port)
        host, port = site.manifest.entra_url.split("://")[1].split(":")
        handshake(context.site_trust.entra_context(), host, int(port))
    finally:
        context.close()


def test_run_context_reads_the_crl_distribution_point_from_the_cmg_certificate(site: RunningSite) -> None:
    """The CDP URL comes from the certificate the CMG presents and matches the site's CRL listener."""
    context = RunContext.from_options(Namespace(site=str(site.manifest_path)))
    try:
        endpoints = context.endpoints
        assert context.cdp_url(endpoints.host, endpoints.port) == site.manifest.crl_url
    finally:
        context.close()


def test_user_numbers_are_never_handed_out_twice(site: RunningSite) -> None:
    """Each user of a process gets its own number, counting from 0."""
    context = RunContext.from_options(Namespace(site=str(site.manifest_path)))
    try:
        assert [context.next_user_number() for _ in range(4)] == [0, 1, 2, 3]
    finally:
        context.close()


def test_crl_cache_shares_one_copy_per_distinct_crl() -> None:
    """Two downloads of the same CRL become one object, so a large fleet holds it once."""
    cache = CrlCache()
    first = cache.intern(Crl(digest="abc", pem=b"x", next_update=time.time() + 60))
    second = cache.intern(Crl(digest="abc", pem=b"x", next_update=time.time() + 60))
    assert second is first and len(cache) == 1


def _crl_der(next_update: datetime.datetime) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    builder = x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(
        next_update - datetime.timedelta(days=1)).next_update(next_update)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_crl_cache_parses_each_distinct_download_once_and_never_mixes_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every device downloads the same CRL: the bytes seen before give the copy read then, without parsing again;
    other bytes give their own CRL, exactly what Crl.from_der reads; bytes that are no CRL are refused."""
    soon = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    first_der, second_der = _crl_der(soon), _crl_der(soon + datetime.timedelta(days=7))
    parsed: list[bytes] = []
    from_der = Crl.from_der

    def counting(der: bytes) -> Crl:
        parsed.append(der)
        return from_der(der)

    monkeypatch.setattr(Crl, "from_der", staticmethod(counting))
    cache = CrlCache()
    first = cache.read(first_der)
    assert cache.read(bytes(first_der)) is first and parsed == [first_der]
    second = cache.read(second_der)
    assert second is not first and second == from_der(second_der) and first == from_der(first_der)
    assert second.next_update == soon.timestamp() + 7 * 86400 and len(cache) == 2
    with pytest.raises(CrlUnavailable, match="not a DER CRL"):
        cache.read(b"no CRL")


def test_seeded_fleet_replays_the_clients_the_site_database_seeded(tmp_path: Path) -> None:
    """Device ids and client ids derived here are exactly the ones `cmg-harness up --seed-clients` registers."""
    with SiteDatabase(tmp_path / "site.db", clock=time.time) as db:
        db.onboard_tenant(TENANT, "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b", "https://ConfigMgrService")
        registrations = db.seed_clients(25, TENANT, random.Random(SEED_CLIENTS_RNG_SEED))
        seeded = SeededFleet()
        for index in (24, 0, 13):  # any order
            client = seeded.client(index)
            assert client.smsid == registrations[index].smsid
            assert db.client(client.smsid).device_id == client.device_id  # type: ignore[union-attr]


def test_seeded_fleet_refuses_a_negative_index() -> None:
    """Seeded clients are numbered from 0."""
    with pytest.raises(ValueError, match="-1"):
        SeededFleet().client(-1)
