"""The site CA's revocation list, read back as a verifier reads it: the serials the CRL lists, thisUpdate and
nextUpdate to the second (the expired-CRL fault included), the CRL number, the issuer's key id, the state that
survives a restart, and the cached CRL being rebuilt when a revocation changes it or half its validity has gone."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cmg_protocol.clock import FakeClock
from mock_site.pki.certificates import PkiError
from mock_site.pki.revocation import DEFAULT_CRL_VALIDITY, RevocationList

NOW = 1_700_000_000.0
DAY = 86_400
WEEK = 7 * DAY
# An EC key is enough for a CA that only signs CRLs here, and quick to make once for the module.
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revocation test CA")])
CA_CERT = (
    x509.CertificateBuilder()
    .subject_name(CA_NAME)
    .issuer_name(CA_NAME)
    .public_key(CA_KEY.public_key())
    .serial_number(1)
    .not_valid_before(dt.datetime.fromtimestamp(NOW - DAY, tz=dt.UTC))
    .not_valid_after(dt.datetime.fromtimestamp(NOW + 365 * DAY, tz=dt.UTC))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), critical=False)
    .sign(CA_KEY, hashes.SHA256())
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "pki" / "revocation.json"


def _list(state: Path, clock: FakeClock) -> RevocationList:
    return RevocationList(state, clock=clock, ca_cert=CA_CERT, ca_key=CA_KEY)


@pytest.fixture
def revocation(state: Path, clock: FakeClock) -> RevocationList:
    return _list(state, clock)


def _der(revocation: RevocationList, **kwargs: object) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(revocation.crl_der(**kwargs))  # type: ignore[arg-type]


def _serials(crl: x509.CertificateRevocationList) -> list[int]:
    return [entry.serial_number for entry in crl]


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _times(crl: x509.CertificateRevocationList) -> tuple[float, float]:
    assert crl.next_update_utc is not None
    return crl.last_update_utc.timestamp(), crl.next_update_utc.timestamp()


# --- what the CRL says ---------------------------------------------------------------------------------------------


def test_an_empty_crl_is_signed_by_the_ca_and_names_its_key(revocation: RevocationList) -> None:
    """Nothing revoked: no entries, the CA's name as issuer, its key id as authority key id, both extensions not
    critical, CRL number 1, a valid signature."""
    crl = _der(revocation)
    assert _serials(crl) == []
    assert crl.issuer == CA_NAME
    assert crl.is_signature_valid(CA_KEY.public_key())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    expected = x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()).digest
    assert (aki.value.key_identifier, aki.critical) == (expected, False)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert (number.value.crl_number, number.critical) == (1, False)


def test_the_crl_is_valid_for_a_week_from_now_by_default(revocation: RevocationList) -> None:
    """thisUpdate is the site's clock, nextUpdate exactly seven days later (the documented default)."""
    assert DEFAULT_CRL_VALIDITY == WEEK
    assert _times(_der(revocation)) == (NOW, NOW + WEEK)


def test_next_update_follows_the_interval_asked_for(revocation: RevocationList) -> None:
    assert _times(_der(revocation, next_update_in=3_600)) == (NOW, NOW + 3_600)
    assert _times(_der(revocation, next_update_in=1)) == (NOW, NOW + 1)  # the shortest whole-second interval


def test_an_expired_crl_ended_a_day_before_now(revocation: RevocationList) -> None:
    """The expired-CRL fault: nextUpdate one day in the past, thisUpdate one interval before that."""
    assert _times(_der(revocation, expired=True)) == (NOW - DAY - WEEK, NOW - DAY)
    assert _times(_der(revocation, next_update_in=3_600, expired=True)) == (NOW - DAY - 3_600, NOW - DAY)


def test_pem_and_der_are_the_same_crl(revocation: RevocationList) -> None:
    revocation.revoke(42)
    pem = x509.load_pem_x509_crl(revocation.crl_pem())
    der = _der(revocation)
    assert (_serials(pem), _number(pem), _times(pem)) == (_serials(der), _number(der), _times(der)) == ([42], 1,
                                                                                                        (NOW, NOW + WEEK))
    expired = x509.load_pem_x509_crl(revocation.crl_pem(expired=True))
    assert _times(expired) == (NOW - DAY - WEEK, NOW - DAY)


@pytest.mark.parametrize("interval", [0, -1, 0.0, float("nan")])
def test_a_next_update_interval_that_is_not_positive_is_refused(revocation: RevocationList, interval: float) -> None:
    with pytest.raises(PkiError, match=r"^CRL nextUpdate interval must be > 0 s, got "):
        revocation.crl_der(next_update_in=interval)


# --- revoking --------------------------------------------------------------------------------------------------------


def test_the_crl_lists_exactly_the_revoked_serials_with_their_revocation_time(
        revocation: RevocationList, clock: FakeClock) -> None:
    revocation.revoke(7)
    clock.advance(60)
    revocation.revoke(3)
    crl = _der(revocation)
    assert _serials(crl) == [3, 7]
    assert revocation.revoked_serials() == frozenset({3, 7})
    when = {entry.serial_number: entry.revocation_date_utc.timestamp() for entry in crl}
    assert when == {7: NOW, 3: NOW + 60}
    assert crl.get_revoked_certificate_by_serial_number(5) is None


def test_an_expired_crl_dates_no_revocation_after_its_this_update(revocation: RevocationList) -> None:
    """A serial revoked now, in a CRL whose thisUpdate lies in the past: its revocation date is that thisUpdate."""
    revocation.revoke(9)
    crl = _der(revocation, expired=True)
    assert [(e.serial_number, e.revocation_date_utc.timestamp()) for e in crl] == [(9, NOW - DAY - WEEK)]


def test_revoking_twice_keeps_the_first_revocation_time_and_the_cached_crl(
        revocation: RevocationList, clock: FakeClock) -> None:
    revocation.revoke(11)
    first = revocation.crl_der()
    clock.advance(10)
    revocation.revoke(11)
    assert revocation.crl_der() == first  # nothing changed: the same CRL, not a new number
    clock.advance(WEEK)  # past half the validity: rebuilt, still with the first revocation time
    crl = _der(revocation)
    assert [(e.serial_number, e.revocation_date_utc.timestamp()) for e in crl] == [(11, NOW)]


def test_unrevoke_takes_a_serial_off_and_says_whether_it_was_listed(revocation: RevocationList) -> None:
    revocation.revoke(5)
    revocation.revoke(6)
    assert _serials(_der(revocation)) == [5, 6]
    assert revocation.unrevoke(5) is True
    assert revocation.revoked_serials() == frozenset({6})
    assert _serials(_der(revocation)) == [6]  # the cached CRL is not served after the change
    assert revocation.unrevoke(5) is False
    assert revocation.unrevoke(99) is False


def test_unrevoking_an_unlisted_serial_keeps_the_cached_crl(revocation: RevocationList) -> None:
    revocation.revoke(5)
    first = revocation.crl_der()
    assert revocation.unrevoke(6) is False
    assert revocation.crl_der() == first


@pytest.mark.parametrize("serial", [0, -1, True, False, 1.0, "3", None])
def test_a_serial_that_is_not_a_positive_integer_is_refused(revocation: RevocationList, serial: object) -> None:
    with pytest.raises(PkiError, match=r"^certificate serial must be a positive integer, got "):
        revocation.revoke(serial)  # type: ignore[arg-type]
    with pytest.raises(PkiError, match=r"^certificate serial must be a positive integer, got "):
        revocation.unrevoke(serial)  # type: ignore[arg-type]
    assert revocation.revoked_serials() == frozenset()


def test_serial_one_is_a_valid_serial(revocation: RevocationList) -> None:
    revocation.revoke(1)
    assert _serials(_der(revocation)) == [1]
    assert revocation.unrevoke(1) is True


# --- the cache ---------------------------------------------------------------------------------------------------------


def test_the_same_crl_is_served_until_half_its_validity_has_gone(revocation: RevocationList,
                                                                 clock: FakeClock) -> None:
    """Interval 100 s: the CRL built at t is served at t and t + 49 s; at t + 50 s a new one (number 2) is built."""
    first = revocation.crl_der(next_update_in=100)
    assert revocation.crl_der(next_update_in=100) == first
    clock.advance(49)
    assert revocation.crl_der(next_update_in=100) == first
    clock.advance(1)
    rebuilt = x509.load_der_x509_crl(revocation.crl_der(next_update_in=100))
    assert (_number(rebuilt), _times(rebuilt)) == (2, (NOW + 50, NOW + 150))


def test_a_revocation_rebuilds_the_cached_crl_at_once(revocation: RevocationList) -> None:
    """No time passes: the CRL served after a revocation lists the serial and carries the next number."""
    before = _der(revocation)
    revocation.revoke(77)
    after = _der(revocation)
    assert (_serials(before), _number(before)) == ([], 1)
    assert (_serials(after), _number(after)) == ([77], 2)


def test_a_clock_set_back_rebuilds_rather_than_serve_a_crl_from_the_future(revocation: RevocationList,
                                                                          clock: FakeClock) -> None:
    revocation.crl_der()
    clock.advance(-60)
    crl = _der(revocation)
    assert (_number(crl), _times(crl)) == (2, (NOW - 60, NOW - 60 + WEEK))


def test_each_interval_and_the_expired_crl_are_cached_apart(revocation: RevocationList) -> None:
    """A one-week CRL, a one-hour CRL and an expired CRL at the same moment are three CRLs, each served again as is."""
    week, hour, expired = revocation.crl_der(), revocation.crl_der(next_update_in=3_600), revocation.crl_der(expired=True)
    assert [_number(x509.load_der_x509_crl(d)) for d in (week, hour, expired)] == [1, 2, 3]
    assert (revocation.crl_der(), revocation.crl_der(next_update_in=3_600), revocation.crl_der(expired=True)) == (
        week, hour, expired)


def test_crl_numbers_rise_by_one_per_crl_built(revocation: RevocationList) -> None:
    numbers = []
    for serial in (1, 2, 3):
        revocation.revoke(serial)
        numbers.append(_number(_der(revocation)))
    assert numbers == [1, 2, 3]


# --- state on disk -------------------------------------------------------------------------------------------------------


def test_revocations_and_the_crl_number_survive_a_restart(state: Path, clock: FakeClock) -> None:
    first = _list(state, clock)
    first.revoke(21)
    clock.advance(30)
    first.revoke(8)
    assert _number(_der(first)) == 1
    again = _list(state, clock)
    assert again.revoked_serials() == frozenset({8, 21})
    crl = _der(again)
    assert _number(crl) == 2
    assert {e.serial_number: e.revocation_date_utc.timestamp() for e in crl} == {21: NOW, 8: NOW + 30}


def test_the_state_file_holds_the_serials_their_times_and_the_last_crl_number(state: Path,
                                                                              revocation: RevocationList) -> None:
    assert not state.exists()  # nothing to keep yet
    revocation.revoke(12)
    assert json.loads(state.read_text()) == {"revoked": {"12": NOW}, "crl_number": 0}
    revocation.crl_der()
    assert json.loads(state.read_text()) == {"revoked": {"12": NOW}, "crl_number": 1}
    revocation.unrevoke(12)
    assert json.loads(state.read_text()) == {"revoked": {}, "crl_number": 1}


def test_a_state_file_without_a_crl_number_starts_at_one(state: Path, clock: FakeClock) -> None:
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"revoked": {"4": NOW - 5}}))
    crl = _der(_list(state, clock))
    assert (_number(crl), [(e.serial_number, e.revocation_date_utc.timestamp()) for e in crl]) == (1, [(4, NOW - 5)])


@pytest.mark.parametrize("text", ["not json", "[]", '{"revoked": []}', '{"revoked": {"x": 1}}',
                                  '{"crl_number": "many"}', '{"revoked": {"4": null}}', '{"crl_number": null}'])
def test_an_unreadable_state_file_is_refused_with_its_name(state: Path, clock: FakeClock, text: str) -> None:
    state.parent.mkdir(parents=True)
    state.write_text(text)
    with pytest.raises(PkiError, match=r"^revocation state '.*revocation\.json' is unreadable: "):
        _list(state, clock)
