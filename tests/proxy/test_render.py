"""Rendering the nginx configuration from a manifest: what goes in, what is refused, and that nginx accepts it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import harness.proxy
from cmg_protocol import urlmap
from harness.cli import main
from harness.proxy import NginxError, NginxProcess, ProxyConfigError, parse_listen, render
from harness.proxy.nginx import NAIVE, ROLE_ENDPOINTS, VALIDATING
from harness.proxy.site import ProxySite
from mock_site.manifest import ManifestTenant
from mock_site.testing import example_manifest
from tests.proxy.conftest import ROLE_ID, EchoSite


def test_public_names_are_sorted() -> None:
    """The package re-exports a sorted ``__all__`` of names that exist."""
    assert harness.proxy.__all__ == sorted(harness.proxy.__all__)
    assert all(hasattr(harness.proxy, name) for name in harness.proxy.__all__)


@pytest.mark.parametrize("endpoint", ROLE_ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("prefix", [urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH])
def test_the_endpoint_table_agrees_with_the_url_map(endpoint: Any, prefix: str) -> None:
    """Methods, body limits and whether a certificate may stand in for the token are the URL map's."""
    query = {"none": "", "mplist": "MPLIST", "policy": "P1"}[endpoint.query]
    route = urlmap.match(f"/{prefix}/{ROLE_ID}/{endpoint.name}", query)
    assert (route.endpoint, route.methods, route.max_body_bytes) == (endpoint.name, endpoint.methods,
                                                                      endpoint.max_body_bytes)
    takes_cert = route.auth is urlmap.AuthKind.CLIENT_CERT_OR_TOKEN
    assert takes_cert == (endpoint.cert_or_token and prefix == urlmap.MUTUAL_AUTH)


def test_every_role_endpoint_of_the_url_map_has_a_location() -> None:
    """No endpoint the URL map publishes under a role id is missing from the proxy."""
    published = {name for name in (urlmap.CCM_STS, urlmap.CCM_SYSTEM_TOKENAUTH, urlmap.CCM_SYSTEM, urlmap.CCM_CLIENT,
                                   urlmap.SMS_AUT, urlmap.SMS_POL)}
    assert {endpoint.name for endpoint in ROLE_ENDPOINTS} == published


def test_only_the_validating_variant_checks_tokens(echo_site: EchoSite, tmp_path: Path) -> None:
    """``validating`` puts auth_request on every token endpoint (15 locations, ServiceMetadata's two included); ``naive``
    has none and no validator."""
    naive = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path / "n").config_file.read_text()
    validating = render(echo_site.manifest, variant=VALIDATING, out_dir=tmp_path / "v").config_file.read_text()
    def checks(text: str) -> list[str]:
        return re.findall(r"^\s*auth_request ", text, re.MULTILINE)
    assert checks(naive) == [] and "cmg_token_validation" not in naive
    assert len(checks(validating)) == 2 * len(ROLE_ENDPOINTS) + 1 + 2


def test_only_onboarded_tenants_get_aad_auth_info(echo_site: EchoSite, tmp_path: Path) -> None:
    """The AADAuthInfo map names the onboarded tenants and not the others."""
    text = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path).config_file.read_text()
    onboarded = echo_site.manifest.onboarded_tenant_ids
    others = [t.tenant_id for t in echo_site.manifest.tenants if not t.onboarded]
    assert all(tenant in text for tenant in onboarded)
    assert not any(tenant in text for tenant in others)


def test_every_file_nginx_writes_is_inside_the_directory(echo_site: EchoSite, tmp_path: Path) -> None:
    """Pid file, logs and temp paths are all under the rendered directory."""
    rendered = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path / "proxy")
    lines = rendered.config_file.read_text().splitlines()
    for directive in ("pid ", "error_log ", "access_log ", "client_body_temp_path ", "proxy_temp_path "):
        (line,) = [line.strip() for line in lines if line.strip().startswith(directive)]
        assert line.split()[1].startswith(f"{tmp_path / 'proxy'}/"), line


def test_an_address_as_cp_server_name_becomes_localhost(echo_site: EchoSite) -> None:
    """nginx matches DNS names only, so the connection point's certificate is checked for ``localhost``."""
    assert ProxySite.from_manifest(echo_site.manifest).cp_server_name == "localhost"
    named = echo_site.manifest.replace(cp_server_name="cp.contoso.com")
    assert ProxySite.from_manifest(named).cp_server_name == "cp.contoso.com"


def test_a_port_is_picked_and_recorded(echo_site: EchoSite, tmp_path: Path) -> None:
    """Port 0 becomes a free port; proxy.json records the URL and the command line."""
    rendered = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path)
    info = json.loads((tmp_path / "proxy.json").read_text())
    assert rendered.port > 0
    assert (info["url"], info["command"]) == (rendered.url, rendered.command())


@pytest.mark.parametrize("change,named", [
    ({"cp_urls": ()}, "cp_urls"),
    ({"cp_urls": ("http://127.0.0.1:1",)}, "http://127.0.0.1:1"),
    ({"cp_urls": ("https://127.0.0.1",)}, "https://127.0.0.1"),
    ({"token_validation_url": "https://127.0.0.1:1/validate"}, "https://127.0.0.1:1/validate"),
    ({"token_validation_url": "http://127.0.0.1:1/v;alidate"}, "v;alidate"),
    ({"cmg_key_file": Path("/nonexistent/cmg.key")}, "/nonexistent/cmg.key"),
    ({"cmg_identity_cert_file": None}, "cmg_identity_cert_file"),
    ({"cmg_identity_key_file": Path("/nonexistent/id.key")}, "/nonexistent/id.key"),
    ({"tenants": (ManifestTenant(tenant_id="x';", onboarded=True, client_app_id="a", resource_uri="r"),)}, "x';"),
])
def test_unusable_manifest_values_are_named(echo_site: EchoSite, tmp_path: Path, change: dict, named: str) -> None:
    """A manifest that cannot make a safe configuration raises ProxyConfigError naming the value."""
    with pytest.raises(ProxyConfigError, match=named.replace("?", r"\?")):
        render(echo_site.manifest.replace(**change), variant=NAIVE, out_dir=tmp_path)


@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_the_proxy_presents_the_cmg_identity_to_the_connection_points(echo_site: EchoSite, tmp_path: Path,
                                                                      variant: str) -> None:
    """The connection points take work only from the CMG: both variants present its identity certificate."""
    text = render(echo_site.manifest, variant=variant, out_dir=tmp_path).config_file.read_text()
    assert f"proxy_ssl_certificate {Path(echo_site.manifest.cmg_identity_cert_file or '').resolve()};" in text
    assert f"proxy_ssl_certificate_key {Path(echo_site.manifest.cmg_identity_key_file or '').resolve()};" in text


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:99999", "0.0.0.0:8443", "example.com:443", "127.0.0.1:x"])
def test_listen_addresses_must_be_loopback_host_and_port(text: str) -> None:
    """The proxy listens on loopback only, at HOST:PORT."""
    with pytest.raises(ProxyConfigError, match="listen|loopback"):
        parse_listen(text)


def test_an_unknown_variant_is_named(echo_site: EchoSite, tmp_path: Path) -> None:
    """Only naive and validating exist."""
    with pytest.raises(ProxyConfigError, match="'strict'"):
        render(echo_site.manifest, variant="strict", out_dir=tmp_path)


@pytest.mark.nginx
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_nginx_accepts_both_variants(echo_site: EchoSite, nginx_binary: str, tmp_path: Path, variant: str) -> None:
    """``nginx -t`` finds nothing wrong with either rendered configuration."""
    NginxProcess(render(echo_site.manifest, variant=variant, out_dir=tmp_path), binary=nginx_binary).check()


@pytest.mark.nginx
def test_a_port_in_use_fails_the_start_with_nginx_s_reason(echo_site: EchoSite, nginx_binary: str,
                                                            tmp_path: Path) -> None:
    """A second nginx on a taken port stops with an NginxError that says why, and leaves nothing running."""
    first = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path / "first")
    with NginxProcess(first, binary=nginx_binary):
        second = render(echo_site.manifest, variant=NAIVE, out_dir=tmp_path / "second", listen=f"127.0.0.1:{first.port}")
        process = NginxProcess(second, binary=nginx_binary)
        with pytest.raises(NginxError, match="Address already in use"):
            process.start(timeout=5)
        assert process.pid is None


def test_proxy_config_command_renders_and_prints_the_command_line(
        echo_site: EchoSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cmg-harness proxy-config`` writes nginx.conf and prints the nginx command line and the URL to aim at."""
    site_file = tmp_path / "site.json"
    echo_site.manifest.write(site_file)
    code = main(["proxy-config", "--site", str(site_file), "--variant", "validating", "--listen", "127.0.0.1:0",
                 "--out", str(tmp_path / "nginx")])
    out, err = capsys.readouterr()
    info = json.loads((tmp_path / "nginx" / "proxy.json").read_text())
    assert code == 0
    assert f"-c {tmp_path / 'nginx' / 'nginx.conf'}" in out and "daemon off;" in out
    assert f"--target {info['url']}" in err and "auth_request" in (tmp_path / "nginx" / "nginx.conf").read_text()


def test_proxy_config_command_names_a_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest without the connection point's URLs exits 2, naming the field."""
    site_file = tmp_path / "site.json"
    broken = example_manifest().to_dict()
    del broken["cp_urls"]
    site_file.write_text(json.dumps(broken))
    assert main(["proxy-config", "--site", str(site_file), "--out", str(tmp_path / "nginx")]) == 2
    assert "cp_urls" in capsys.readouterr().err


def test_proxy_config_runs_as_a_program(echo_site: EchoSite, tmp_path: Path) -> None:
    """The installed entry point runs the subcommand too."""
    site_file = tmp_path / "site.json"
    echo_site.manifest.write(site_file)
    result = subprocess.run([sys.executable, "-m", "harness.cli", "proxy-config", "--site", str(site_file),
                             "--variant", "naive", "--out", str(tmp_path / "nginx")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("-g 'daemon off;'")


@pytest.mark.nginx
def test_nginx_that_cannot_start_reports_its_own_message(echo_site: EchoSite, nginx_binary: str,
                                                         tmp_path: Path) -> None:
    """When nginx exits at start (here: its certificate key vanished) the error carries nginx's reason."""
    key = tmp_path / "cmg.key"
    key.write_bytes(Path(echo_site.manifest.cmg_key_file).read_bytes())
    rendered = render(echo_site.manifest.replace(cmg_key_file=key), variant=NAIVE, out_dir=tmp_path / "proxy")
    key.unlink()
    process = NginxProcess(rendered, binary=nginx_binary)
    with pytest.raises(NginxError, match="cmg.key"):
        process.start(timeout=5)
    assert process.pid is None
