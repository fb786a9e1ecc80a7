"""Specification of the CMG's published URL map (PROTOCOL.md §2)."""

from __future__ import annotations

import pytest

from cmg_protocol import urlmap
from cmg_protocol.urlmap import (
    AuthKind,
    UrlMapError,
    aad_auth_info_path,
    content_path,
    match,
    mutual_auth_path,
    server_auth_path,
)

ID = "72186325152220500"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"


@pytest.mark.parametrize(
    ("path", "endpoint", "auth", "internal", "template", "max_body"),
    [
        (f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS", "CCM_STS", AuthKind.ENTRA_TOKEN, "/CCM_STS",
         "/CCM_Proxy_ServerAuth/{id}/CCM_STS", 64 * 1024),
        (f"/CCM_Proxy_MutualAuth/{ID}/CCM_STS", "CCM_STS", AuthKind.ENTRA_TOKEN, "/CCM_STS",
         "/CCM_Proxy_MutualAuth/{id}/CCM_STS", 64 * 1024),
        (f"/CCM_Proxy_ServerAuth/{ID}/ccm_system_tokenauth/request", "ccm_system_tokenauth/request",
         AuthKind.CCM_TOKEN, "/ccm_system_tokenauth/request",
         "/CCM_Proxy_ServerAuth/{id}/ccm_system_tokenauth/request", 1024 * 1024),
        (f"/CCM_Proxy_MutualAuth/{ID}/ccm_system/request", "ccm_system/request", AuthKind.CLIENT_CERT_OR_TOKEN,
         "/ccm_system/request", "/CCM_Proxy_MutualAuth/{id}/ccm_system/request", 1024 * 1024),
        (f"/CCM_Proxy_ServerAuth/{ID}/CCM_Client/ccmsetup.cab", "CCM_Client/ccmsetup.cab", AuthKind.CCM_TOKEN,
         "/CCM_Client/ccmsetup.cab", "/CCM_Proxy_ServerAuth/{id}/CCM_Client/ccmsetup.cab", 0),
        (f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut?MPLIST", "SMS_MP/.sms_aut", AuthKind.CLIENT_CERT_OR_TOKEN,
         "/SMS_MP/.sms_aut?MPLIST", "/CCM_Proxy_MutualAuth/{id}/SMS_MP/.sms_aut", 0),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_aut?MPLIST", "SMS_MP/.sms_aut", AuthKind.CCM_TOKEN,
         "/SMS_MP/.sms_aut?MPLIST", "/CCM_Proxy_ServerAuth/{id}/SMS_MP/.sms_aut", 0),
        (f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_pol?{{4E4A}}.2_00", "SMS_MP/.sms_pol",
         AuthKind.CLIENT_CERT_OR_TOKEN, "/SMS_MP/.sms_pol?{4E4A}.2_00", "/CCM_Proxy_MutualAuth/{id}/SMS_MP/.sms_pol", 0),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol?{{4E4A}}.2_00", "SMS_MP/.sms_pol", AuthKind.CCM_TOKEN,
         "/SMS_MP/.sms_pol?{4E4A}.2_00", "/CCM_Proxy_ServerAuth/{id}/SMS_MP/.sms_pol", 0),
        (f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={TENANT}", "AADAuthInfo", AuthKind.NONE,
         f"/AADAuthInfo?TenantID={TENANT}", "/CCM_Proxy_ServerAuth/AADAuthInfo", 0),
        ("/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001",
         "downloadrestservice.svc/getcontentxmlsecure", AuthKind.CLIENT_CERT_OR_TOKEN,
         "/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001",
         "/downloadrestservice.svc/getcontentxmlsecure", 0),
    ],
)
def test_published_paths_map_to_their_endpoint(path, endpoint, auth, internal, template, max_body) -> None:
    """Each published path gives its endpoint, auth, MP path, metrics template and body limit."""
    route = match(path)
    assert (route.endpoint, route.auth, route.internal_path, route.route_template, route.max_body_bytes) == (
        endpoint, auth, internal, template, max_body)


@pytest.mark.parametrize(
    "path",
    [
        "/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS",
        "/ccm_proxy_serverauth/72057594037937981/ccm_sts",
        "/CCM_Proxy_ServerAuth/72057594037937981/CCM_STS",
    ],
)
def test_matching_ignores_case_and_keeps_the_received_path(path: str) -> None:
    """Paths match without case; request_uri keeps the client's spelling and the rest is canonical."""
    route = match(path)
    assert route.request_uri == path
    assert (route.prefix, route.role_id, route.internal_path) == ("CCM_Proxy_ServerAuth", "72057594037937981", "/CCM_STS")
    assert route.route_template == "/CCM_Proxy_ServerAuth/{id}/CCM_STS"


def test_request_uri_has_no_query() -> None:
    """CMGService groups by path, so request_uri leaves the query out."""
    route = match(f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut", "mplist")
    assert (route.request_uri, route.internal_path) == (f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut",
                                                        "/SMS_MP/.sms_aut?MPLIST")


def test_messaging_routes_take_ccm_post() -> None:
    """CCM messaging endpoints are reached with the CCM_POST verb; file and list endpoints with GET."""
    assert match(f"/CCM_Proxy_ServerAuth/{ID}/ccm_system_tokenauth/request").methods == ("CCM_POST",)
    assert "GET" in match(f"/CCM_Proxy_ServerAuth/{ID}/CCM_Client/ccmsetup.cab").methods


def test_validated_query_parameters_are_exposed() -> None:
    """TenantID, pid and cid are available on the route after validation."""
    assert match(aad_auth_info_path(TENANT)).param("TenantID") == TENANT
    route = match(content_path("CS100001", "Content_1.1"))
    assert (route.param("pid"), route.param("cid"), route.param("other")) == ("CS100001", "Content_1.1", None)


@pytest.mark.parametrize(
    "path",
    [
        f"/CCM_Proxy_ServerAuth/{ID}/../x",
        f"/CCM_Proxy_ServerAuth/{ID}/%2e%2e/CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/%2E%2E/CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/.%2e/CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/./CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/%2e/CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS/..",
        "//evil/CCM_Proxy_ServerAuth/1/CCM_STS",
        f"/CCM_Proxy_ServerAuth//{ID}/CCM_STS",
        "http://x/",
        f"https://evil.example/CCM_Proxy_ServerAuth/{ID}/CCM_STS",
        "evil.example/CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}\\..\\CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/%5c../CCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM%2fSTS",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS\x00",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS%00",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS\r\nHost: evil",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM STS",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS\u00e9",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS#frag",
        f"/CCM_Proxy_ServerAuth/{ID}/%zzCCM_STS",
        f"/CCM_Proxy_ServerAuth/{ID}/%ff",
    ],
)
def test_paths_that_could_escape_the_map_are_refused_as_malformed(path: str) -> None:
    """Dot segments (literal or encoded), '//', backslashes, absolute URLs and control characters give 400."""
    with pytest.raises(UrlMapError) as caught:
        match(path)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/CCM_STS",
        "/CCM_Proxy_ServerAuth",
        f"/CCM_Proxy_ServerAuth/{ID}",
        f"/CCM_Proxy_ServerAuth/{ID}/",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS/",
        f"/CCM_Proxy_ServerAuth/{ID}/admin",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_Client/other.exe",
        f"/CCM_Proxy_ServerAuth/{ID}/CCM_Client",
        f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_aut?MPKEYINFO",
        f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_aut?MPLIST1",
        f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_aut?MPLIST2&PS",
        f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_aut?SITESIGNCERT&PS1",
        f"/CCM_Proxy_ServerAuth/{ID}/ServiceMetadata",
        "/CCM_Proxy_ServerAuth/ServiceMetadata/x",
        "/CCM_Proxy_ServerAuth/abc/CCM_STS",
        "/CCM_Proxy_ServerAuth/-1/CCM_STS",
        "/CCM_Proxy_ServerAuth/123456789012345678901/CCM_STS",
        f"/CCM_Proxy_Other/{ID}/CCM_STS",
        f"/CCM_Proxy_MutualAuth/AADAuthInfo?TenantID={TENANT}",
        "/downloadrestservice.svc/other",
    ],
)
def test_paths_outside_the_map_are_not_found(path: str) -> None:
    """Unknown prefixes, endpoints, files and role ids that are not numbers give 404."""
    with pytest.raises(UrlMapError) as caught:
        match(path)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("path", "query", "reason"),
    [
        ("/CCM_Proxy_ServerAuth/AADAuthInfo", "", "needs a GUID TenantID"),
        ("/CCM_Proxy_ServerAuth/AADAuthInfo", "TenantID=not-a-guid", "needs a GUID TenantID"),
        ("/CCM_Proxy_ServerAuth/AADAuthInfo", f"TenantID={TENANT}x", "needs a GUID TenantID"),
        ("/downloadrestservice.svc/getcontentxmlsecure", "pid=CS100001", "as cid"),
        ("/downloadrestservice.svc/getcontentxmlsecure", "pid=../x&cid=1", "as pid"),
        (f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS", "x=1", "takes no query"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "", "needs a query naming the policy"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "a b", "query has"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "a\r\nHost: x", "query has"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "a\\b", "query has"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol", "%g1", "malformed percent"),
        (f"/CCM_Proxy_ServerAuth/{ID}/SMS_MP/.sms_pol?a", "b", "query given twice"),
    ],
)
def test_bad_queries_are_refused_as_malformed(path: str, query: str, reason: str) -> None:
    """Missing or malformed query parameters give 400 with a reason naming the problem."""
    with pytest.raises(UrlMapError, match=reason) as caught:
        match(path, query)
    assert caught.value.status == 400


def test_aad_auth_info_tenant_parameter_name_ignores_case() -> None:
    """tenantid= works like TenantID=."""
    assert match("/ccm_proxy_serverauth/aadauthinfo", f"tenantid={TENANT}").param("TenantID") == TENANT


def test_url_map_errors_are_value_errors_with_status_and_reason() -> None:
    """UrlMapError is a ValueError whose message is its reason."""
    with pytest.raises(ValueError, match="not in the CMG's URL map") as caught:
        match("/nothing")
    assert isinstance(caught.value, UrlMapError) and str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    ("built", "endpoint"),
    [
        (server_auth_path(ID, "CCM_STS"), "CCM_STS"),
        (server_auth_path(ID, "/ccm_system_tokenauth/request"), "ccm_system_tokenauth/request"),
        (mutual_auth_path(ID, "SMS_MP/.sms_aut?MPLIST"), "SMS_MP/.sms_aut"),
        (mutual_auth_path(ID, "ccm_system/request"), "ccm_system/request"),
        (aad_auth_info_path(TENANT), "AADAuthInfo"),
        (content_path("CS100001", "CS100001"), "downloadrestservice.svc/getcontentxmlsecure"),
    ],
)
def test_builders_make_paths_the_map_accepts(built: str, endpoint: str) -> None:
    """What the client builds, the CMG matches."""
    assert match(built).endpoint == endpoint


def test_builders_spell_the_documented_paths() -> None:
    """Builders give the paths the walk-through shows."""
    assert server_auth_path(ID, "CCM_STS") == f"/CCM_Proxy_ServerAuth/{ID}/CCM_STS"
    assert mutual_auth_path(ID, "") == f"/CCM_Proxy_MutualAuth/{ID}"
    assert aad_auth_info_path(TENANT) == f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={TENANT}"
    assert content_path("CS100001", "CS100001") == (
        "/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001")


@pytest.mark.parametrize(
    "build",
    [
        lambda: server_auth_path("72x", "CCM_STS"),
        lambda: server_auth_path(ID, "../CCM_STS"),
        lambda: mutual_auth_path(ID, "nowhere"),
        lambda: aad_auth_info_path("tenant"),
        lambda: content_path("CS1&x=1", "CS1"),
    ],
)
def test_builders_refuse_what_the_map_would_refuse(build) -> None:
    """A builder raises UrlMapError rather than hand out a path the CMG refuses."""
    with pytest.raises(UrlMapError):
        build()


@pytest.mark.parametrize(
    ("query", "internal"),
    [
        ("MPLIST", "?MPLIST"),
        ("mplist1&ps1", "?MPLIST1&PS1"),
        ("MPLIST2&PS1", "?MPLIST2&PS1"),
        ("MPCERT", "?MPCERT"),
        ("SiteSignCert", "?SITESIGNCERT"),
        ("MPKEYINFORMATION", "?MPKEYINFORMATION"),
        ("MPKEYINFORMATIONMEDIA", "?MPKEYINFORMATIONMEDIA"),
    ],
)
@pytest.mark.parametrize(("prefix", "auth"), [("CCM_Proxy_MutualAuth", AuthKind.CLIENT_CERT_OR_TOKEN),
                                              ("CCM_Proxy_ServerAuth", AuthKind.CCM_TOKEN)])
def test_every_sms_aut_verb_is_published_with_its_auth(query: str, internal: str, prefix: str, auth: AuthKind) -> None:
    """Each .sms_aut verb reaches the MP in canonical casing (site code upper-cased), behind a certificate or token."""
    route = match(f"/{prefix}/{ID}/SMS_MP/.sms_aut", query)
    assert (route.endpoint, route.auth, route.internal_path) == ("SMS_MP/.sms_aut", auth, "/SMS_MP/.sms_aut" + internal)
    assert route.request_uri == f"/{prefix}/{ID}/SMS_MP/.sms_aut"


@pytest.mark.parametrize(("path", "auth"), [("/CCM_Proxy_ServerAuth/ServiceMetadata", AuthKind.CCM_TOKEN),
                                            ("/ccm_proxy_mutualauth/servicemetadata", AuthKind.CLIENT_CERT_OR_TOKEN)])
def test_service_metadata_is_published_on_both_prefixes(path: str, auth: AuthKind) -> None:
    """The certificate check: no role id, GET only, no body, the prefix's credential."""
    route = match(path)
    assert (route.endpoint, route.auth, route.role_id, route.methods, route.max_body_bytes) == (
        "ServiceMetadata", auth, None, ("GET", "HEAD"), 0)
    assert route.route_template.endswith("/ServiceMetadata") and route.request_uri == path
    with pytest.raises(UrlMapError) as caught:
        match(path, "x=1")
    assert caught.value.status == 400


def test_sms_aut_and_service_metadata_builders() -> None:
    """The builders give matching paths and refuse a verb the map does not publish."""
    from cmg_protocol.urlmap import service_metadata_path, sms_aut_path

    assert sms_aut_path("CCM_Proxy_MutualAuth", ID, "SITESIGNCERT") == f"/CCM_Proxy_MutualAuth/{ID}/SMS_MP/.sms_aut?SITESIGNCERT"
    assert sms_aut_path("CCM_Proxy_ServerAuth", ID, "MPLIST2", "PS1").endswith(".sms_aut?MPLIST2&PS1")
    assert service_metadata_path("CCM_Proxy_ServerAuth") == "/CCM_Proxy_ServerAuth/ServiceMetadata"
    for verb, site in (("MPLIST1", ""), ("MPCERT", "PS1"), ("OTHER", "")):
        with pytest.raises(UrlMapError) as refused:
            sms_aut_path("CCM_Proxy_MutualAuth", ID, verb, site)
        assert refused.value.status == 400
    with pytest.raises(UrlMapError) as refused:
        service_metadata_path("CCM_Proxy_Other")
    assert (refused.value.status, refused.value.reason) == (
        400, "prefix must be CCM_Proxy_ServerAuth or CCM_Proxy_MutualAuth, got 'CCM_Proxy_Other'")


def test_a_repeated_target_gets_its_remembered_route_and_another_target_its_own() -> None:
    """Matches are remembered by the exact path and query: case, role id and query each give their own route."""
    path = "/CCM_Proxy_MutualAuth/72057594037927939/ccm_system/request"
    first = urlmap.match(path)
    assert urlmap.match("".join(list(path))) is first  # an equal text, not only the same object
    assert urlmap.match(path.replace("72057594037927939", "72057594037927940")).role_id == "72057594037927940"
    assert urlmap.match(path.replace("MutualAuth", "ServerAuth")).auth is AuthKind.CCM_TOKEN
    assert first.auth is AuthKind.CLIENT_CERT_OR_TOKEN and first.prefix == "CCM_Proxy_MutualAuth"
    pol = "/CCM_Proxy_MutualAuth/72057594037927939/SMS_MP/.sms_pol"
    assert urlmap.match(pol, "a=1").internal_path == "/SMS_MP/.sms_pol?a=1"
    assert urlmap.match(pol, "a=2").internal_path == "/SMS_MP/.sms_pol?a=2"
    assert urlmap.match(pol + "?a=3").internal_path == "/SMS_MP/.sms_pol?a=3"


def test_a_refused_target_is_refused_every_time_and_a_long_one_is_matched_afresh() -> None:
    """Refusals are never remembered; targets past the cached length are matched like any other."""
    for _ in range(3):
        with pytest.raises(UrlMapError, match="takes no query"):
            urlmap.match("/CCM_Proxy_MutualAuth/72057594037927939/ccm_system/request", "x=1")
    long_query = "q=" + "a" * urlmap.MAX_CACHED_TARGET_CHARS
    route = urlmap.match("/CCM_Proxy_MutualAuth/1/SMS_MP/.sms_pol", long_query)
    assert route.internal_path == f"/SMS_MP/.sms_pol?{long_query}"
    assert urlmap.match("/CCM_Proxy_MutualAuth/1/SMS_MP/.sms_pol", long_query) == route
