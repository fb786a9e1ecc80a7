"""Device profiles, fleets and trait parsing."""

from __future__ import annotations

import pytest

from harness.client.device import (
    WAM_DEVICE_FAILS_800703F0,
    WAM_DEVICE_FAILS_D0090016,
    WAM_OK,
    WAM_USER_FAILS_TOO,
    Fleet,
    FleetMix,
    ProfileError,
    SmsSigningIdentity,
    parse_traits,
)

TENANTS = ("9aaf466a-3f40-4468-b3cd-f0010f21f05a", "2ca9a796-a1a6-43ec-88f1-5935b32155c5")


def test_a_device_is_the_same_for_the_same_seed_and_index() -> None:
    """Device i depends only on seed, mix, tenants and i, so any process rebuilds the same fleet."""
    mix = FleetMix(wpj_missing=0.3, clock_skew=0.2)
    assert Fleet(11, mix, TENANTS).device(12345) == Fleet(11, mix, TENANTS).device(12345)


def test_devices_differ_between_indexes_and_seeds() -> None:
    """Neighbouring indexes and other seeds give other identities."""
    a, b, c = Fleet(1, tenant_ids=TENANTS).device(0), Fleet(1, tenant_ids=TENANTS).device(1), \
        Fleet(2, tenant_ids=TENANTS).device(0)
    assert len({a.device_id, b.device_id, c.device_id}) == 3
    assert len({a.netbios_name, b.netbios_name}) == 2


def test_identity_has_the_documented_shapes() -> None:
    """Names, GUIDs and SIDs look like a Windows client's."""
    device = Fleet(3, tenant_ids=TENANTS).device(42)
    assert device.netbios_name == "CMGDEV0000042" and len(device.netbios_name) <= 15
    assert device.fq_name == "cmgdev0000042.corp.contoso.com"
    assert device.user_sid.startswith("S-1-5-21-") and device.machine_sid.startswith("S-1-5-21-")
    assert device.tenant_id in TENANTS
    assert device.client_guid.startswith("GUID:") and device.client_guid == device.client_guid.upper()


@pytest.mark.parametrize(("trait", "field", "value"), [
    ("wpj_missing", "wpj_cert", False),
    ("root_ca_missing", "root_ca_present", False),
    ("pki_client_cert", "pki_client_cert", True),
    ("nocrlcheck", "nocrlcheck", True),
])
def test_fleet_shares_set_device_traits(trait: str, field: str, value: bool) -> None:
    """A share of 1 gives every device the trait, a share of 0 none."""
    everyone = Fleet(5, FleetMix(**{trait: 1.0}), TENANTS)
    nobody = Fleet(5, FleetMix(**{trait: 0.0}), TENANTS)
    assert all(getattr(everyone.device(i), field) == value for i in range(50))
    assert all(getattr(nobody.device(i), field) != value for i in range(50))


def test_a_share_gives_about_that_fraction_of_the_fleet() -> None:
    """A 20 % share of WPJ-less devices is about 20 % of 2,000 devices."""
    fleet = Fleet(9, FleetMix(wpj_missing=0.2), TENANTS)
    missing = sum(not fleet.device(i).wpj_cert for i in range(2000))
    assert 330 <= missing <= 470


def test_wam_shares_split_into_the_documented_behaviours() -> None:
    """wam_device_token_error gives both documented error codes; no_user_token gives the double failure."""
    device_errors = {Fleet(4, FleetMix(wam_device_token_error=1.0), TENANTS).device(i).wam for i in range(60)}
    assert device_errors == {WAM_DEVICE_FAILS_D0090016, WAM_DEVICE_FAILS_800703F0}
    assert Fleet(4, FleetMix(no_user_token=1.0), TENANTS).device(0).wam == WAM_USER_FAILS_TOO
    assert Fleet(4, FleetMix(), TENANTS).device(0).wam == WAM_OK


def test_skewed_clocks_are_off_by_skew_seconds_either_way() -> None:
    """clock_skew picks devices; skew_seconds says by how much, ahead or behind."""
    fleet = Fleet(8, FleetMix(clock_skew=1.0, skew_seconds=600), TENANTS)
    assert {fleet.device(i).clock_skew for i in range(40)} == {600.0, -600.0}


def test_mix_is_parsed_from_text() -> None:
    """The command-line form of a mix gives the same shares."""
    assert FleetMix.parse("wpj_missing=0.2, root_ca_missing=0.05,skew_seconds=120") == FleetMix(
        wpj_missing=0.2, root_ca_missing=0.05, skew_seconds=120)


@pytest.mark.parametrize(("text", "named"), [
    ("wpj_missing=1.5", "wpj_missing"),
    ("nocrlcheck=-0.1", "nocrlcheck"),
    ("wpj_missing=lots", "lots"),
    ("teleport=0.1,warp=0.2", "teleport, warp"),
    ("wpj_missing", "NAME=SHARE"),
    ("wam_device_token_error=0.7,no_user_token=0.6", "must not exceed 1"),
])
def test_bad_mixes_are_refused_naming_the_bad_part(text: str, named: str) -> None:
    """Out-of-range shares, unknown traits and malformed entries raise ProfileError naming them."""
    with pytest.raises(ProfileError, match=named):
        FleetMix.parse(text)


def test_traits_text_becomes_profile_fields() -> None:
    """The CLI's --profile text maps flags and values onto DeviceProfile fields."""
    assert parse_traits("wpj_missing, pki_client_cert,clock_skew=900,wam=device_fails_800703f0") == {
        "wpj_cert": False, "pki_client_cert": True, "clock_skew": 900.0, "wam": WAM_DEVICE_FAILS_800703F0}
    assert parse_traits("") == {}


@pytest.mark.parametrize(("text", "named"), [
    ("flying", "flying"),
    ("clock_skew=soon", "soon"),
    ("clock_skew", "needs a value"),
    ("nocrlcheck=1", "takes no value"),
    ("wam=sometimes", "sometimes"),
    ("tenant_id=nope", "nope"),
])
def test_bad_traits_are_refused_naming_them(text: str, named: str) -> None:
    """Unknown traits and bad values raise ProfileError naming the bad value."""
    with pytest.raises(ProfileError, match=named):
        parse_traits(text)


@pytest.mark.parametrize(("change", "named"), [
    ({"wam": "maybe"}, "maybe"),
    ({"clock_skew": float("nan")}, "nan"),
    ({"device_id": "not-a-guid"}, "not-a-guid"),
    ({"netbios_name": "A-NAME-FAR-TOO-LONG"}, "A-NAME-FAR-TOO-LONG"),
])
def test_profiles_refuse_bad_fields(change: dict[str, object], named: str) -> None:
    """A profile with a bad field cannot exist."""
    with pytest.raises(ProfileError, match=named):
        Fleet(1, tenant_ids=TENANTS).device(0).with_traits(**change)


def test_with_traits_refuses_unknown_fields() -> None:
    """A misspelt field is named, not silently ignored."""
    with pytest.raises(ProfileError, match="wpj"):
        Fleet(1, tenant_ids=TENANTS).device(0).with_traits(wpj=False)


def test_fleet_refuses_bad_tenants_and_indexes() -> None:
    """A fleet needs GUID tenants; device indexes are whole numbers in range."""
    with pytest.raises(ProfileError, match="tenant"):
        Fleet(1, tenant_ids=[])
    with pytest.raises(ProfileError, match="contoso"):
        Fleet(1, tenant_ids=["contoso"])
    with pytest.raises(ProfileError, match="-1"):
        Fleet(1, tenant_ids=TENANTS).device(-1)


def test_profiles_are_small_and_frozen() -> None:
    """Profiles use slots and cannot be changed in place."""
    device = Fleet(1, tenant_ids=TENANTS).device(0)
    assert not hasattr(device, "__dict__")
    with pytest.raises(AttributeError):
        device.wpj_cert = False  # type: ignore[misc]


def test_the_sms_signing_identity_is_made_once_per_process() -> None:
    """Every simulated device registers with the same self-signed certificate (hex DER)."""
    identity = SmsSigningIdentity.shared()
    assert identity is SmsSigningIdentity.shared()
    assert identity.cert_hex.startswith("30") and len(identity.sign(b"data")) == 512


def test_a_byte_identical_body_reuses_its_clientauth_hook() -> None:
    """A device's policy request body is the same every poll: its hook is remembered, not signed again."""
    identity = SmsSigningIdentity.shared()
    first = identity.clientauth("GUID:11111111-2222-3333-4444-555555555555", b"body part as sent", "PC-1")
    same_bytes = b"".join([b"body part ", b"as sent"])  # equal to the first body, not the same object
    again = identity.clientauth("GUID:11111111-2222-3333-4444-555555555555", same_bytes, "PC-1")
    assert again is first


def test_a_changed_body_or_client_gets_a_new_hook_that_verifies() -> None:
    """The cache never hands back a stale signature: each hook verifies over its own body and client id only."""
    from cmg_protocol.clientauth import ClientAuthError, verify_hook

    identity = SmsSigningIdentity.shared()
    public = identity.key.public_key()
    client, other = "GUID:11111111-2222-3333-4444-555555555555", "GUID:66666666-2222-3333-4444-555555555555"
    old = identity.clientauth(client, b"body one", "PC-1")
    new = identity.clientauth(client, b"body two", "PC-1")
    moved = identity.clientauth(other, b"body two", "PC-1")
    assert dict(new)["PayloadSignature"] != dict(old)["PayloadSignature"]
    assert dict(moved)["ClientIDSignature"] != dict(new)["ClientIDSignature"]
    verify_hook(old, public, client, b"body one")
    verify_hook(new, public, client, b"body two")
    verify_hook(moved, public, other, b"body two")
    with pytest.raises(ClientAuthError):
        verify_hook(old, public, client, b"body two")
    assert identity.clientauth(client, b"body two", "PC-2") != new  # the machine name is part of the hook


def test_client_token_headers_within_one_second_are_signed_once_and_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy bodies downloaded in the same second carry the same, valid signature, made once; the next second's
    token is signed afresh."""
    import harness.client.device as device_module
    from cmg_protocol.clientauth import verify_client_token

    identity = SmsSigningIdentity.shared()
    identity._token_signatures.clear()
    signed: list[str] = []
    real = device_module.client_token_signature
    monkeypatch.setattr(device_module, "client_token_signature", lambda key, token: signed.append(token) or real(key, token))
    client = "GUID:11111111-2222-3333-4444-555555555555"
    first = identity.client_token_headers(client, 1_750_000_000.2)
    again = identity.client_token_headers(client, 1_750_000_000.9)
    later = identity.client_token_headers(client, 1_750_000_001.0)
    other = identity.client_token_headers("GUID:66666666-2222-3333-4444-555555555555", 1_750_000_000.2)
    assert again == first and later["ClientToken"] != first["ClientToken"]
    assert signed == [first["ClientToken"], later["ClientToken"], other["ClientToken"]]
    for headers in (first, later, other):
        verify_client_token(headers["ClientToken"], headers["ClientTokenSignature"], identity.key.public_key())
    assert first["ClientTokenSignature"] == real(identity.key, first["ClientToken"])  # the same bytes as unremembered


def test_the_clientauth_hook_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet larger than the cache does not make it grow: it is emptied when full."""
    import harness.client.device as device_module

    monkeypatch.setattr(device_module, "HOOK_CACHE_SIZE", 3)
    identity = SmsSigningIdentity.shared()
    identity._hooks.clear()
    identity._token_signatures.clear()
    for number in range(7):
        identity.clientauth("GUID:11111111-2222-3333-4444-555555555555", b"body %d" % number, "PC-1")
        identity.client_token_headers("GUID:11111111-2222-3333-4444-555555555555", 1_750_000_000.0 + number)
        assert len(identity._hooks) <= 3 and len(identity._token_signatures) <= 3
