"""The nginx configurations shipped in examples/nginx/ are what the renderer makes for the example site, and nginx takes them.

After a change to the renderer, regenerate them with ``CMG_HARNESS_REGEN_EXAMPLES=1 pytest tests/proxy/test_examples.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.proxy import ProxySite, RenderedProxy, render_config
from harness.proxy.nginx import NAIVE, VALIDATING
from harness.proxy.site import Tenant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "nginx"

#: The example site of examples/nginx/README.md: `cmg-harness up --no-cmg --state-dir /srv/cmg-harness/state`.
STATE = Path("/srv/cmg-harness/state")
EXAMPLE_SITE = ProxySite(
    connection_points=(("127.0.0.1", 8444),),
    cp_server_name="localhost",
    ca_file=STATE / "pki" / "ca.pem",
    cmg_cert_file=STATE / "pki" / "cmg.pem",
    cmg_key_file=STATE / "pki" / "cmg.key",
    cmg_identity_cert_file=STATE / "pki" / "cmg-identity.pem",
    cmg_identity_key_file=STATE / "pki" / "cmg-identity.key",
    token_validation=("127.0.0.1", 8445, "/validate"),
    tenants=(Tenant("9aaf466a-3f40-4468-b3cd-f0010f21f05a", "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                    "https://ConfigMgrService"),),
)


def _example(variant: str, directory: Path = STATE / "nginx") -> str:
    rendered = RenderedProxy(directory=directory, variant=variant, host="127.0.0.1", port=8443)
    return render_config(EXAMPLE_SITE, rendered, worker_user="")


@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_the_shipped_example_is_the_rendered_one(variant: str) -> None:
    """examples/nginx/<variant>.conf matches the renderer's output for the example site."""
    path = EXAMPLES / f"{variant}.conf"
    if os.environ.get("CMG_HARNESS_REGEN_EXAMPLES") == "1":
        path.write_text(_example(variant))
    assert path.read_text() == _example(variant)


@pytest.mark.nginx
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_nginx_accepts_the_example_once_its_paths_exist(variant: str, nginx_binary: str, tmp_path: Path) -> None:
    """With the example's paths pointed at real files, ``nginx -t`` accepts the example text."""
    import subprocess

    import trustme

    ca = trustme.CA()
    pki = tmp_path / "state" / "pki"
    pki.mkdir(parents=True)
    ca.cert_pem.write_to_path(str(pki / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(pki / "cmg.pem"))
    leaf.private_key_pem.write_to_path(str(pki / "cmg.key"))
    identity = ca.issue_cert("cmg-identity.invalid")
    identity.cert_chain_pems[0].write_to_path(str(pki / "cmg-identity.pem"))
    identity.private_key_pem.write_to_path(str(pki / "cmg-identity.key"))
    text = (EXAMPLES / f"{variant}.conf").read_text().replace(str(STATE), str(tmp_path / "state"))
    config = tmp_path / "state" / "nginx" / "nginx.conf"
    for sub in ("logs", "temp"):
        (config.parent / sub).mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    result = subprocess.run([nginx_binary, "-p", f"{config.parent}/", "-c", str(config), "-e",
                             str(config.parent / "logs" / "error.log"), "-t", "-q"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
