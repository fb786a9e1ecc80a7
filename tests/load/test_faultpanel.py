"""The fault controls in Locust's web UI: routes that relay the site's control API, and the page that uses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from harness.chaos.page import render_fault_page
from harness.load import faultpanel
from harness.load.faultpanel import (
    API_PATH,
    PAGE_PATH,
    REQUEST_HEADER,
    ManifestFaultClient,
    PanelError,
    fault_page_html,
    set_arguments,
)
from mock_site.manifest import SiteManifest
from mock_site.testing import RunningSite, example_manifest

PAGE_HEADERS = {"X-Requested-With": "cmg-harness", "Content-Type": "application/json"}


class WebUI:
    """What the routes need of Locust's WebUI: its Flask app and its optional login guard."""

    def __init__(self) -> None:
        self.app = Flask("test")
        self.guarded: list[str] = []

    def auth_required_if_enabled(self, view: Any) -> Any:
        self.guarded.append(view.__name__)
        return view


@pytest.fixture
def web_ui(clean_site: RunningSite) -> WebUI:
    ui = WebUI()
    faultpanel.install(ui, ManifestFaultClient(lambda: clean_site.manifest))
    return ui


@pytest.fixture
def browser(web_ui: WebUI) -> Iterator[Any]:
    with web_ui.app.test_client() as client:
        yield client


def test_the_page_is_self_contained_and_never_holds_the_token(browser: Any, clean_site: RunningSite) -> None:
    """The page loads nothing from elsewhere (its policy says so) and the fault API token is nowhere in it."""
    page = browser.get(PAGE_PATH)
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "https://" not in text and "http://" not in text and "<link" not in text
    assert clean_site.manifest.faults_token not in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_every_route_passes_the_web_uis_login_guard(web_ui: WebUI) -> None:
    """With --web-login each route asks for the login like Locust's own pages."""
    assert set(web_ui.guarded) == {"fault_page", "fault_list", "fault_catalogue", "fault_reset", "fault_set",
                                   "fault_clear"}


def test_a_fault_set_through_the_panel_is_on_at_the_site_and_cleared_again(browser: Any,
                                                                          clean_site: RunningSite) -> None:
    """PUT switches the fault on at the site (with role, duration and parameters); DELETE switches it off."""
    answer = browser.put(API_PATH + "/latency", headers=PAGE_HEADERS,
                         json={"role": "mp", "probability": 0.5, "duration": 30, "params": {"mean_ms": 5}})
    assert answer.status_code == 200, answer.get_json()
    [active] = browser.get(API_PATH).get_json()["active"]
    assert (active["name"], active["role"], active["probability"], active["params"]["mean_ms"]) == ("latency", "mp",
                                                                                                   0.5, 5.0)
    assert browser.delete(API_PATH + "/latency", headers=PAGE_HEADERS).status_code == 200
    assert browser.get(API_PATH).get_json()["active"] == []


def test_reset_clears_every_fault(browser: Any, clean_site: RunningSite) -> None:
    """POST reset leaves no fault on."""
    clean_site.set_fault("cp_disconnected", duration=30)
    clean_site.set_fault("mp_slow", duration=30)
    assert browser.post(API_PATH + "/reset", headers=PAGE_HEADERS).status_code == 200
    assert browser.get(API_PATH).get_json()["active"] == []


def test_the_catalogue_lists_every_server_fault_with_its_roles(browser: Any) -> None:
    """The page builds its form from the site's catalogue."""
    catalogue = browser.get(API_PATH + "/catalogue").get_json()
    names = {fault["name"] for fault in catalogue["faults"]}
    assert {"crl_unreachable", "cp_disconnected", "ccm_token_lifetime", "over_capacity"} <= names


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/gremlins", {}, 404, "gremlins"),
    ("/latency", {"role": "entra"}, 400, "'entra'"),
    ("/latency", {"probability": 2}, 400, "probability"),
    ("/latency", {"colour": "red"}, 400, "colour"),
    ("/latency", ["mp"], 400, "JSON object"),
])
def test_refusals_keep_the_sites_reason_and_status(browser: Any, path: str, body: Any, status: int,
                                                   named: str) -> None:
    """A bad fault, role, probability or body is refused with a message that names it."""
    answer = browser.put(API_PATH + path, headers=PAGE_HEADERS, json=body)
    assert answer.status_code == status and named in answer.get_json()["error"]


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {**PAGE_HEADERS, "Origin": "https://evil.example"},
    {**PAGE_HEADERS, "Sec-Fetch-Site": "cross-site"},
])
def test_changes_from_anywhere_but_the_page_itself_are_refused(browser: Any, clean_site: RunningSite,
                                                               headers: dict[str, str]) -> None:
    """Locust's UI allows cross-origin calls; fault changes need the page's header and its own origin."""
    answer = browser.put(API_PATH + "/cp_disconnected", headers=headers, json={"duration": 30})
    assert answer.status_code == 403
    assert browser.get(API_PATH).get_json()["active"] == []


def test_a_same_origin_change_is_accepted(browser: Any) -> None:
    """The page's own origin (as browsers send it) passes."""
    answer = browser.post(API_PATH + "/reset", headers={**PAGE_HEADERS, "Origin": "http://localhost",
                                                        "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 200


def test_a_site_that_is_gone_answers_502_naming_it() -> None:
    """With no site behind the manifest the relay says it could not reach the fault API."""
    ui = WebUI()
    gone = example_manifest(faults_url="http://127.0.0.1:9/faults", faults_token="t")
    faultpanel.install(ui, ManifestFaultClient(lambda: gone))
    answer = ui.app.test_client().get(API_PATH)
    assert answer.status_code == 502 and "not reachable" in answer.get_json()["error"]


def test_an_unreadable_manifest_answers_502_without_a_traceback() -> None:
    """A manifest that cannot be read is reported as such."""
    def missing() -> SiteManifest:
        raise ValueError("--site 'x/site.json': no site manifest there")

    ui = WebUI()
    faultpanel.install(ui, ManifestFaultClient(missing))
    answer = ui.app.test_client().get(API_PATH)
    assert answer.status_code == 502 and "no site manifest there" in answer.get_json()["error"]


def test_the_routes_follow_locusts_web_base_path(clean_site: RunningSite) -> None:
    """Under --web-base-path the page and its API move along."""
    ui = WebUI()
    faultpanel.install(ui, ManifestFaultClient(lambda: clean_site.manifest), base_path="/locust/")
    client = ui.app.test_client()
    assert client.get("/locust" + PAGE_PATH).status_code == 200
    assert client.get("/locust" + API_PATH).status_code == 200


@pytest.mark.parametrize(("body", "named"), [({"role": 3}, "role"), ({"params": [1]}, "params")])
def test_set_arguments_are_checked_for_shape(body: dict[str, Any], named: str) -> None:
    """The relay refuses bodies whose fields have the wrong type, naming the field."""
    with pytest.raises(PanelError, match=named):
        set_arguments(body)


MALICIOUS = "</script><script>alert(1)</script>"


def test_values_rendered_into_the_page_are_html_safe_json() -> None:
    """What the page template is given goes into its script as JSON that cannot close the script element."""
    html = render_fault_page(api_suffix=MALICIOUS, request_header=("X-Evil", MALICIOUS))
    assert html.count("<script>") == 1 and html.count("</script>") == 1
    assert "alert(1)" in html and "\\u003c/script\\u003e" in html


def test_the_served_page_sends_the_header_the_routes_require() -> None:
    """The page's script is rendered with REQUEST_HEADER and the API path, so they cannot drift apart."""
    html = fault_page_html()
    assert f"const requestHeader = {json.dumps(list(REQUEST_HEADER))};" in html
    assert '+ "' + API_PATH.removeprefix(PAGE_PATH) + '";' in html
    assert html.startswith("<!doctype html>")


def test_the_pages_script_writes_what_the_site_sends_as_text_only() -> None:
    """Fault names, descriptions and parameters come from the site: the script never parses them as markup."""
    html = fault_page_html()
    script = html[html.index("<script>"):html.index("</script>")]
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
