"""The fault control page served by ``harness.load.faultpanel``: plain HTML and script, no assets from elsewhere.

Rendered from the Jinja2 template ``templates/fault_page.html.j2`` (package data of ``harness.chaos``) with
autoescaping on. The page itself shows only what its script reads from the panel's API, always as text; the values
rendered into it here (where its API is, the header it sends) go in as HTML-safe JSON.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

TEMPLATE = "fault_page.html.j2"


@cache
def environment() -> Environment:
    """The Jinja2 environment of the chaos templates, autoescaping every page; undefined names fail loudly."""
    return Environment(loader=PackageLoader("harness.chaos", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True,
                                                    default=True),
                       undefined=StrictUndefined, keep_trailing_newline=True)


def render_fault_page(*, api_suffix: str, request_header: tuple[str, str]) -> str:
    """The page; its script calls the API at the page's own path + ``api_suffix`` and sends ``request_header``."""
    return environment().get_template(TEMPLATE).render(api_suffix=api_suffix, request_header=list(request_header))
