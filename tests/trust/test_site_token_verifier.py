"""The site's widened token check and MP_TokenManager, called as objects: CCM tokens first, site tokens only when
the CCM check refuses, the cache of verified site tokens (its expiry edge, a block after caching, its bound), the bulk
token faults, and who may get a client-unique token."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import stat
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cmg_protocol import site_tokens as st
from cmg_protocol import tokens
from cmg_protocol.site_tokens import ClientTokenReply, ClientTokenRequest, SiteKey
from cmg_protocol.xmlbase import MessageError
from mock_site import site_tokens as mst
from mock_site.faults.registry import FaultRegistry
from mock_site.site_tokens import SiteTokenIssuer, SiteTokenVerifier, TokenManager

HIERARCHY = "5e8b5a9b-2b58-4f6e-9d7a-3c1f0e2d4b6a"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
SMSID = "GUID:7D0C1E2F-3A4B-4C5D-8E9F-0A1B2C3D4E5F"
NOW = 1_750_000_000.0
LEEWAY = 30.0
SITE_KEY = SiteKey(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="site", x5t="eDV0")
CCM_CLAIMS = {"token_type": "Device", "smsid": SMSID, "tid": TENANT}


class Ccm:
    """The CCM token verifier's stand-in: takes the one token "ccm", refuses everything else."""

    REFUSAL = tokens.TokenRejected("IDX12741", "not a CCM token", "malformed")

    def verify(self, token: str) -> dict[str, Any]:
        if token == "ccm":
            return CCM_CLAIMS
        raise self.REFUSAL


@dataclass(frozen=True)
class Record:
    smsid: str


class Db:
    def client(self, smsid: str) -> Record | None:
        return Record(SMSID) if smsid.upper() == SMSID.upper() else None


class Site:
    def __init__(self, role: str = "cmg") -> None:
        self.now = NOW
        self.faults = FaultRegistry(lambda: self.now, random.Random(1))
        self.issuer = SiteTokenIssuer(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT,
                                      clock=lambda: self.now, scaled=lambda seconds: seconds, db=Db())
        self.verifier = SiteTokenVerifier(Ccm(), self.issuer, leeway=LEEWAY, faults=self.faults, role=role)

    def bulk(self, lifetime: float = 600.0, unique_id: str = "bulk-1") -> str:
        return st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=self.now,
                                   lifetime=lifetime, unique_id=unique_id)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = st.verify_site_token

    def counted(token: str, **kwargs: Any) -> dict[str, Any]:
        seen.append(token)
        return real(token, **kwargs)
    monkeypatch.setattr(st, "verify_site_token", counted)
    return seen


def test_a_ccm_token_is_the_ccm_verifiers_answer() -> None:
    assert Site().verifier.verify("ccm") is CCM_CLAIMS


def test_a_token_that_is_no_site_token_gets_the_ccm_refusal() -> None:
    with pytest.raises(tokens.TokenRejected) as refused:
        Site().verifier.verify("not.a.token")
    assert refused.value is Ccm.REFUSAL


def test_a_bulk_token_reads_as_a_ccm_tokens_claims() -> None:
    site = Site()
    claims = site.verifier.verify(site.bulk())
    assert claims == {"token_type": "BulkRegistration", "tid": TENANT, "deviceid": "", "smsid": "",
                      "unique_id": "bulk-1", "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW + 600)}


def test_a_client_token_names_its_client_as_smsid() -> None:
    site = Site()
    claims = site.verifier.verify(site.issuer.client_token(SMSID).token)
    assert (claims["token_type"], claims["smsid"], claims["unique_id"]) == ("ClientToken", SMSID, SMSID)


def test_a_verified_site_token_is_remembered_until_its_exp_plus_the_leeway(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site()
    token = site.bulk()
    seen = _counting(monkeypatch)
    site.verifier.verify(token)
    site.now = NOW + 600 + LEEWAY - 1
    site.verifier.verify(token)
    assert seen == [token]
    site.now = NOW + 600 + LEEWAY
    with pytest.raises(tokens.TokenRejected, match="expired"):
        site.verifier.verify(token)
    assert seen == [token, token]


def test_a_token_blocked_after_it_was_remembered_is_refused() -> None:
    site = Site()
    token = site.bulk()
    site.verifier.verify(token)
    site.issuer.block("bulk-1")
    with pytest.raises(tokens.TokenRejected, match=r"^IDX10223: the token bulk-1 was blocked by the site$"):
        site.verifier.verify(token)


def test_the_cache_empties_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mst, "SITE_TOKEN_CACHE_ENTRIES", 2)
    site = Site()
    first, second, third = (site.bulk(unique_id=f"bulk-{n}") for n in range(3))
    for token in (first, second):
        site.verifier.verify(token)
    seen = _counting(monkeypatch)
    site.verifier.verify(second)
    assert seen == []
    site.verifier.verify(third)  # full: emptied, then holds the third only
    site.verifier.verify(second)
    assert seen == [third, second]


@pytest.mark.parametrize(("fault", "reason"), [
    ("bulk_token_expired", "the bulk registration token expired (fault bulk_token_expired)"),
    ("bulk_token_revoked", "the bulk registration token was blocked (fault bulk_token_revoked)"),
])
def test_the_bulk_token_faults_refuse_bulk_tokens_only(fault: str, reason: str) -> None:
    site = Site()
    token, client = site.bulk(), site.issuer.client_token(SMSID).token
    site.verifier.verify(token)  # remembered first: the fault still applies
    site.faults.set(fault)
    with pytest.raises(tokens.TokenRejected) as refused:
        site.verifier.verify(token)
    assert (refused.value.code, refused.value.reason, refused.value.kind) == ("IDX10223", reason, "expired")
    assert site.verifier.verify(client)["token_type"] == "ClientToken"
    assert site.verifier.verify("ccm") is CCM_CLAIMS


def test_the_bulk_token_faults_act_at_their_role_only() -> None:
    site = Site(role="mp")
    site.faults.set("bulk_token_expired")  # the catalogue's role: the CMG
    assert site.verifier.verify(site.bulk())["token_type"] == "BulkRegistration"


def test_a_verifier_without_faults_takes_bulk_tokens() -> None:
    site = Site()
    plain = SiteTokenVerifier(Ccm(), site.issuer, leeway=LEEWAY)
    assert plain.verify(site.bulk())["unique_id"] == "bulk-1"


def _renewal(site: Site, claims: dict[str, Any] | None, smsid: str = SMSID) -> ClientTokenReply:
    return ClientTokenReply.from_xml(TokenManager(site.issuer).reply(ClientTokenRequest(smsid).to_xml(), claims))


def test_a_bulk_token_client_gets_its_client_unique_token() -> None:
    site = Site()
    reply = _renewal(site, site.verifier.verify(site.bulk()), smsid=SMSID.lower())
    assert site.verifier.verify(reply.token)["smsid"] == SMSID
    assert reply.renew_at == int(NOW) + 30 * 86400


def test_a_client_unique_token_renews_its_own_client_only() -> None:
    site = Site()
    own = site.verifier.verify(site.issuer.client_token(SMSID).token)
    assert _renewal(site, {**own, "smsid": SMSID.lower()}).token
    with pytest.raises(MessageError, match=r"^a client-unique token renews only its own client$"):
        _renewal(site, {**own, "smsid": "GUID:00000000-0000-0000-0000-000000000001"})


@pytest.mark.parametrize("claims", [None, {}, CCM_CLAIMS])
def test_only_token_authenticated_clients_get_a_client_unique_token(claims: dict[str, Any] | None) -> None:
    with pytest.raises(MessageError, match="^MP_TokenManager issues client-unique tokens to token-authenticated "):
        _renewal(Site(), claims)


def test_an_unregistered_client_gets_no_client_unique_token() -> None:
    site = Site()
    with pytest.raises(MessageError, match=r"^client 'GUID:00000000-0000-0000-0000-000000000009' is not registered$"):
        _renewal(site, site.verifier.verify(site.bulk()), smsid="GUID:00000000-0000-0000-0000-000000000009")


def test_tokens_below_the_bound_stay_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site()
    first, second = site.bulk(unique_id="bulk-a"), site.bulk(unique_id="bulk-b")
    site.verifier.verify(first)
    site.verifier.verify(second)
    seen = _counting(monkeypatch)
    site.verifier.verify(first)
    assert seen == []


def test_the_issuer_hands_out_bulk_tokens_of_up_to_seven_site_days_scaled() -> None:
    site = Site()
    site.issuer.scaled = lambda seconds: seconds / 100.0
    token = site.issuer.bulk_token(7 * 86400)
    claims = st.verify_site_token(token, keys={"site": SITE_KEY.key.public_key()}, hierarchy_id=HIERARCHY, now=NOW,
                                  leeway=0)
    assert claims["exp"] - claims["nbf"] == 7 * 864
    assert site.issuer.bulk_token(1.0).count(".") == 2
    for lifetime in (0.0, 7 * 86400 + 1):
        with pytest.raises(ValueError, match=rf"^a bulk registration token lives at most 7 days, got {lifetime!r} s$"):
            site.issuer.bulk_token(lifetime)


def test_the_bulk_token_file_is_the_token_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / mst.BULK_TOKEN_NAME
    token = Site().issuer.write_bulk_token(path)
    assert path.read_text() == token and token.count(".") == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [mst.BULK_TOKEN_NAME]


def test_the_site_key_is_named_by_its_certificates_sha1_thumbprint() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CCM signing")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(SITE_KEY.key.public_key())
            .serial_number(7).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(SITE_KEY.key, hashes.SHA256()))
    pki = SimpleNamespace(ccm_signing_cert_pem=cert.public_bytes(Encoding.PEM), ccm_signing_key=SITE_KEY.key,
                          ccm_signing_kid="kid-1")
    key = mst.site_key_of(pki)
    thumbprint = hashlib.sha1(cert.public_bytes(Encoding.DER)).digest()
    assert (key.key, key.kid) == (SITE_KEY.key, "kid-1")
    assert key.x5t == base64.urlsafe_b64encode(thumbprint).decode().rstrip("=") and "=" not in key.x5t
