"""URL map: whole paths only (nothing after a mapped endpoint), and the details the mutation runner found unguarded."""

from __future__ import annotations

import pytest

from cmg_protocol.urlmap import (
    MESSAGING_MAX_BODY_BYTES,
    STS_MAX_BODY_BYTES,
    AuthKind,
    UrlMapError,
    content_path,
    match,
    mutual_auth_path,
    server_auth_path,
)

ID = "72186325152220500"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"


@pytest.mark.parametrize("path", [
    f"/CCM_Proxy_ServerAuth/{ID}/ccm_system_tokenauth/request/extra",
    f"/CCM_Proxy_MutualAuth/{ID}/ccm_system/request/extra",
    f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS/x",
    f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_pol/x",
    f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut/x",
    f"/CCM_Proxy_ServerAuth/{ID}/CCM_Client/ccmsetup.cab/x",
    "/CCM_Proxy_ServerAuth/AADAuthInfo/x",
    "/downloadrestservice.svc/getcontentxmlsecure/x",
    f"/x/CCM_Proxy_ServerAuth/{ID}/CCM_STS",
    f"/CCM_Proxy_ServerAuth/{ID}/{ID}/CCM_STS",
], ids=["tokenauth-extra", "ccm_system-extra", "sts-extra", "sms_pol-extra", "sms_aut-extra", "ccmsetup-extra",
        "aadauthinfo-extra", "content-extra", "leading-segment", "role-id-twice"])
def test_extra_segments_around_a_mapped_endpoint_are_not_in_the_map(path: str) -> None:
    """Only whole paths match: a segment after (or before) a mapped endpoint gives 404, never that endpoint."""
    query = {"sms_pol": "{4E4A}.2_00", "sms_aut": "MPLIST", "AADAuthInfo": f"TenantID={TENANT}",
             "getcontent": "pid=CS1&cid=CS1"}
    q = next((v for k, v in query.items() if k in path), "")
    with pytest.raises(UrlMapError) as refused:
        match(path, q)
    assert refused.value.status == 404


def test_a_role_id_of_twenty_digits_is_the_longest_taken() -> None:
    """Role ids are 1..20 digits."""
    assert match(f"/CCM_Proxy_ServerAuth/{'9' * 20}/CCM_STS").role_id == "9" * 20
    assert match("/CCM_Proxy_ServerAuth/7/CCM_STS").role_id == "7"


def test_on_server_auth_a_cert_route_needs_the_ccm_token() -> None:
    """ServerAuth has no client certificate: the cert-or-token routes become token-only there, not elsewhere."""
    assert match(f"/CCM_Proxy_ServerAuth/{ID}/ccm_system/request").auth is AuthKind.CCM_TOKEN
    assert match(f"/CCM_Proxy_MutualAuth/{ID}/ccm_system/request").auth is AuthKind.CLIENT_CERT_OR_TOKEN
    assert match(f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS").auth is AuthKind.ENTRA_TOKEN
    assert match(f"/CCM_Proxy_MutualAuth/{ID}/CCM_Client/ccmsetup.cab").auth is AuthKind.CCM_TOKEN


def test_routes_carry_their_body_limits_and_methods() -> None:
    """CCM_STS takes 64 KiB POSTs, messaging 1 MiB CCM_POSTs, the GET routes no body."""
    sts = match(f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS")
    assert (sts.max_body_bytes, sts.methods) == (STS_MAX_BODY_BYTES, ("POST",)) and STS_MAX_BODY_BYTES == 65536
    messaging = match(f"/CCM_Proxy_MutualAuth/{ID}/ccm_system/request")
    assert (messaging.max_body_bytes, messaging.methods) == (1048576, ("CCM_POST",))
    assert MESSAGING_MAX_BODY_BYTES == 1048576
    content = match(content_path("CS1", "CS2"))
    assert (content.max_body_bytes, content.methods, content.prefix, content.role_id) == (0, ("GET", "HEAD"), "", None)
    assert (content.param("pid"), content.param("cid"), content.param("x")) == ("CS1", "CS2", None)
    aad = match("/CCM_Proxy_ServerAuth/AADAuthInfo", f"TenantID={TENANT}")
    assert (aad.role_id, aad.max_body_bytes, aad.request_uri) == (None, 0, "/CCM_Proxy_ServerAuth/AADAuthInfo")


def test_percent_encoded_names_match_decoded() -> None:
    """A percent-encoded letter matches like the letter; the request URI keeps what was received."""
    route = match(f"/CCM_Proxy_ServerAuth/{ID}/CCM%5FSTS")
    assert route.endpoint == "CCM_STS" and route.request_uri == f"/CCM_Proxy_ServerAuth/{ID}/CCM%5FSTS"


@pytest.mark.parametrize("segment", ["%2F", "%5C", "%0A", "%C3%A9", "%20"], ids=["slash", "backslash", "lf", "e-acute",
                                                                                   "space"])
def test_percent_encoded_separators_and_controls_are_malformed(segment: str) -> None:
    """Decoded, a segment may not hold a separator, a control character or non-ASCII."""
    with pytest.raises(UrlMapError) as refused:
        match(f"/CCM_Proxy_ServerAuth/{ID}/CCM{segment}STS")
    assert refused.value.status == 400


@pytest.mark.parametrize("path", ["CCM_Proxy_ServerAuth/1/CCM_STS", "https://evil/CCM_Proxy_ServerAuth/1/CCM_STS"])
def test_only_origin_form_paths_are_taken(path: str) -> None:
    """A relative path or an absolute URL is malformed."""
    with pytest.raises(UrlMapError, match="origin-form") as refused:
        match(path)
    assert refused.value.status == 400


def test_a_bad_percent_in_the_query_is_refused_even_when_printable() -> None:
    """%zz is printable ASCII but not percent-encoding: refused as malformed, with its own reason."""
    with pytest.raises(UrlMapError, match="malformed percent-encoding in the query"):
        match(f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "a%zz")


def test_the_mplist_query_ignores_case_and_nothing_else_is_published() -> None:
    """.sms_aut answers MPLIST in any case; another query is not in the map (404, naming MPLIST)."""
    assert match(f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut", "mpList").internal_path == "/SMS_MP/.sms_aut?MPLIST"
    with pytest.raises(UrlMapError, match="only MPLIST") as refused:
        match(f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut", "MPLIST2")
    assert refused.value.status == 404


def test_aad_auth_info_on_mutual_auth_is_refused_with_its_reason() -> None:
    """AADAuthInfo is published on ServerAuth only."""
    with pytest.raises(UrlMapError, match="ServerAuth only"):
        match("/CCM_Proxy_MutualAuth/AADAuthInfo", f"TenantID={TENANT}")


def test_a_role_id_that_is_not_a_number_is_named() -> None:
    """The 404 for a bad role id says so."""
    with pytest.raises(UrlMapError, match="role id 'abc' is not a number"):
        match("/CCM_Proxy_ServerAuth/abc/CCM_STS")


def test_builders_give_the_base_for_an_empty_tail_and_strip_slashes() -> None:
    """An empty (or '/') tail gives the CCMHOSTNAME-style base; a leading slash in the tail is not doubled."""
    assert server_auth_path(ID, "/") == f"/CCM_Proxy_ServerAuth/{ID}"
    assert mutual_auth_path(ID, "//SMS_MP/.sms_aut?MPLIST") == f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut?MPLIST"
    with pytest.raises(UrlMapError, match="role id must be digits") as refused:
        server_auth_path("", "")
    assert refused.value.status == 400


def test_builders_refuse_bad_content_ids_naming_which() -> None:
    """content_path names the id that is wrong."""
    with pytest.raises(UrlMapError, match="content id"):
        content_path("CS1", "")
    with pytest.raises(UrlMapError, match="package id"):
        content_path("x" * 65, "CS1")


def test_a_tenant_id_given_twice_is_judged_by_the_last_one() -> None:
    """``TenantID=<guid>&tenantid=`` is refused: a blank repeat is not dropped in favour of the good value."""
    with pytest.raises(UrlMapError, match="needs a GUID TenantID") as refused:
        match("/CCM_Proxy_ServerAuth/AADAuthInfo", f"TenantID={TENANT}&tenantid=")
    assert refused.value.status == 400
    assert match("/CCM_Proxy_ServerAuth/AADAuthInfo", f"TenantID=&TenantID={TENANT}").param("TenantID") == TENANT


def test_builder_refusals_are_bad_requests() -> None:
    """Every builder refuses with status 400 (the caller's mistake), never 404."""
    from cmg_protocol.urlmap import aad_auth_info_path

    for build in (lambda: aad_auth_info_path("tenant"), lambda: content_path("CS1&x=1", "CS1"),
                  lambda: server_auth_path("x", "CCM_STS")):
        with pytest.raises(UrlMapError) as refused:
            build()
        assert refused.value.status == 400
