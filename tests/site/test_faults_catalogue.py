"""Specification of the fault catalogue: names, roles, parameters and their validation."""

from __future__ import annotations

import json
import math

import pytest

from mock_site import faults
from mock_site.faults import CATALOGUE, DEVICE_FAULTS, ROLES, FaultError, UnknownFault, catalogue_dict, get_spec

SERVER_FAULTS = {
    "crl_unreachable", "crl_expired", "crl_slow", "cmg_cert_revoked", "cp_cert_revocation_offline",
    "tenant_not_onboarded", "entra_token_expired", "entra_bad_signature", "entra_wrong_audience", "entra_wrong_issuer",
    "sts_unavailable", "sts_error", "ccm_token_expired", "ccm_token_lifetime", "latency", "http_error", "reset",
    "cp_disconnected", "mp_slow", "mp_down", "bandwidth", "over_capacity",
    "policy_signature_mismatch", "client_unknown",
    "storage_slow", "signed_url_expired", "storage_unreachable", "content_hash_mismatch",
    "bulk_token_expired", "bulk_token_revoked",
}  # fmt: skip
CLIENT_FAULTS = {"wpj_missing", "wam_device_token_error", "no_user_token", "root_ca_missing", "clock_skew"}


def test_catalogue_holds_exactly_the_server_side_faults() -> None:
    """The catalogue lists every server-side fault of docs/faults.md and nothing else."""
    assert set(CATALOGUE) == SERVER_FAULTS


def test_device_faults_are_the_client_side_faults() -> None:
    """DEVICE_FAULTS lists the client-side faults, none of which the registry accepts."""
    assert {fault.name for fault in DEVICE_FAULTS} == CLIENT_FAULTS
    assert not CLIENT_FAULTS & set(CATALOGUE)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_default_role_is_one_of_the_fault_roles(name: str) -> None:
    """Each fault targets known roles, its default role among them."""
    spec = CATALOGUE[name]
    assert set(spec.roles) <= set(ROLES)
    assert spec.default_role in spec.roles


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_fault_says_what_it_does_and_what_should_follow(name: str) -> None:
    """Each fault has a one-line description and an expected outcome."""
    spec = CATALOGUE[name]
    assert spec.description and "\n" not in spec.description
    assert spec.expected_outcome


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_parameter_defaults_pass_their_own_checks(name: str) -> None:
    """Every default value is valid for its parameter (or unset)."""
    for param in CATALOGUE[name].params:
        assert param.coerce(name, param.default) == param.default


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("latency", {"mean_ms": -1}, "-1"),
        ("latency", {"mean_ms": "fast"}, "'fast'"),
        ("latency", {"mean_ms": True}, "True"),
        ("latency", {"mean_ms": math.nan}, "nan"),
        ("latency", {"mean_ms": None}, "'mean_ms'"),
        ("latency", {"jitter": 5}, "'jitter'"),
        ("http_error", {"status": 200}, "200"),
        ("http_error", {"status": 503.5}, "503.5"),
        ("http_error", {"status_text": "Bad\r\nX-Injected: 1"}, "X-Injected"),
        ("http_error", {"status_text": ""}, "''"),
        ("tenant_not_onboarded", {"tenant_id": "not-a-guid"}, "'not-a-guid'"),
        ("tenant_not_onboarded", {"tenant_id": 42}, "42"),
        ("over_capacity", {"clients_per_instance": 0}, "0"),
        ("bandwidth", {"kib_per_s": 0.5}, "0.5"),
        ("ccm_token_lifetime", {"seconds": 8 * 3600 + 1}, "28801"),
        ("reset", {"status": 500}, "'status'"),
    ],
)
def test_bad_parameters_are_refused_naming_the_value(name: str, params: dict[str, object], fragment: str) -> None:
    """A bad parameter raises FaultError whose message names the offending value."""
    with pytest.raises(FaultError) as error:
        CATALOGUE[name].resolve_params(params)
    assert fragment in str(error.value)


def test_integral_float_is_accepted_as_integer() -> None:
    """An integer parameter given as 503.0 (JSON has one number type) becomes the int 503."""
    status = CATALOGUE["http_error"].resolve_params({"status": 503.0})["status"]
    assert status == 503 and type(status) is int


def test_tenant_id_is_normalised_to_lower_case() -> None:
    """A tenant GUID is stored in its canonical lower-case form."""
    params = CATALOGUE["tenant_not_onboarded"].resolve_params({"tenant_id": "9AAF466A-3F40-4468-B3CD-F0010F21F05A"})
    assert params["tenant_id"] == "9aaf466a-3f40-4468-b3cd-f0010f21f05a"


def test_unset_parameters_take_their_defaults() -> None:
    """Parameters not given are filled from the catalogue, optional ones as None."""
    assert CATALOGUE["over_capacity"].resolve_params(None) == {
        "clients_per_instance": 6000,
        "capacity_clients": None,
        "ms_per_excess_client": 0.05,
        "max_delay_ms": 30_000.0,
        "window_s": 60.0,
    }


@pytest.mark.parametrize(("role", "fragment"), [("proxy", "unknown role 'proxy'"), ("mp", "cannot target role 'mp'")])
def test_bad_roles_are_refused_naming_the_role(role: str, fragment: str) -> None:
    """A role that does not exist, or that the fault cannot target, is refused by name."""
    with pytest.raises(FaultError, match=fragment):
        CATALOGUE["cp_disconnected"].resolve_role(role)


@pytest.mark.parametrize("name", ["no_such_fault", "wpj_missing", 7])
def test_get_spec_refuses_unknown_names(name: object) -> None:
    """Unknown names, device faults among them, raise UnknownFault naming the name."""
    with pytest.raises(UnknownFault, match=repr(name)):
        get_spec(name)


def test_catalogue_dict_is_json_ready() -> None:
    """The catalogue as data survives a JSON round trip with every fault and device fault in it."""
    data = json.loads(json.dumps(catalogue_dict()))
    assert {fault["name"] for fault in data["faults"]} == SERVER_FAULTS
    assert {fault["name"] for fault in data["device_faults"]} == CLIENT_FAULTS


def test_package_exports_a_sorted_importable_all() -> None:
    """The package's __all__ is sorted isort-style (constants, classes, functions) and every name in it exists."""

    def group(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert faults.__all__ == sorted(faults.__all__, key=group)
    for name in faults.__all__:
        assert hasattr(faults, name), name
