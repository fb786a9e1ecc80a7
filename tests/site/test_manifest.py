"""The site manifest: one typed owner of site.json, a round trip that keeps the file format, errors that name the field."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mock_site.manifest import _FIELDS, _OPTIONAL_FIELDS, MANIFEST_NAME, SCHEMA_VERSION, ManifestError, RoleUrl, SiteManifest
from mock_site.testing import RunningSite, example_manifest


def test_every_field_has_a_parser_in_the_files_order() -> None:
    """The parsers and the dataclass name the same fields (schema_version apart), so none is read or written alone."""
    names = [field.name for field in dataclasses.fields(SiteManifest) if field.name != "schema_version"]
    assert list(_FIELDS) + list(_OPTIONAL_FIELDS) == names


def test_the_cmg_identity_files_survive_write_and_read(tmp_path: Path) -> None:
    """The optional CMG identity paths (what a proxy presents to the connection points) round-trip as paths."""
    manifest = example_manifest(tmp_path, cmg_identity_cert_file=tmp_path / "pki" / "cmg-identity.pem",
                                cmg_identity_key_file=tmp_path / "pki" / "cmg-identity.key")
    assert SiteManifest.read(manifest.write(tmp_path / MANIFEST_NAME)) == manifest


def test_the_worker_processes_survive_write_and_read(tmp_path: Path) -> None:
    """``up --processes`` records the worker count and PIDs; the file holds them as a number and a list."""
    manifest = example_manifest(tmp_path, processes=2, worker_pids=(4100, 4101))
    path = manifest.write(tmp_path / MANIFEST_NAME)
    assert SiteManifest.read(path) == manifest
    data = json.loads(path.read_text())
    assert data["processes"] == 2 and data["worker_pids"] == [4100, 4101]


def test_a_manifest_survives_write_and_read(tmp_path: Path) -> None:
    """write then read gives the same manifest; the file is owner-only (it holds the fault API token)."""
    manifest = example_manifest(tmp_path, links=(RoleUrl("crl", "http://10.0.0.1:80/pki/site.crl"),))
    path = manifest.write(tmp_path / MANIFEST_NAME)
    assert SiteManifest.read(path) == manifest
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]  # no temporary file left behind


def test_the_file_keeps_its_keys_and_plain_json_values(tmp_path: Path) -> None:
    """Outside scripts read site.json as plain JSON: lists, objects, strings for paths, schema_version first."""
    data = json.loads(example_manifest(tmp_path).to_json())
    assert next(iter(data)) == "schema_version" and data["schema_version"] == SCHEMA_VERSION
    assert data["metrics_urls"]["cmg"] == "http://127.0.0.1:9100/metrics"
    assert data["ca_file"] == str(tmp_path / "pki" / "ca.pem")
    assert data["cp_urls"] == ["https://127.0.0.1:9444"] and data["links"] == {}
    assert data["tenants"][0] == {"tenant_id": "9aaf466a-3f40-4468-b3cd-f0010f21f05a", "onboarded": True,
                                  "client_app_id": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                                  "resource_uri": "https://ConfigMgrService"}


def test_a_file_without_schema_version_is_version_1(tmp_path: Path) -> None:
    """Manifests written before the version existed read as version 1 when otherwise complete."""
    data = example_manifest(tmp_path).to_dict()
    del data["schema_version"]
    assert SiteManifest.load(json.dumps(data)) == example_manifest(tmp_path)


def test_a_running_sites_manifest_is_read_back_the_same(site: RunningSite) -> None:
    """What a real site writes is what it says it wrote, with its lookups answering."""
    manifest = SiteManifest.read(site.manifest_path)
    assert manifest == site.manifest
    assert manifest.metrics_url("cmg") and manifest.link("cmg") is None
    assert manifest.tenant_id in manifest.onboarded_tenant_ids


def _broken(tmp_path: Path, **changes: object) -> Path:
    data = example_manifest(tmp_path).to_dict()
    for key, value in changes.items():
        if value is _DROP:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps(data))
    return path


_DROP = object()


@pytest.mark.parametrize(("changes", "message"), [
    ({"faults_token": _DROP}, "field 'faults_token' is missing"),
    ({"time_scale": "fast"}, "field 'time_scale' must be a number, got 'fast'"),
    ({"time_scale": 0}, "field 'time_scale' must be > 0"),
    ({"cp_urls": "https://127.0.0.1:1"}, "field 'cp_urls' must be a list of URLs"),
    ({"crl_url": "127.0.0.1/pki/site.crl"}, "field 'crl_url' must be an http(s) URL"),
    ({"cmg_enabled": "yes"}, "field 'cmg_enabled' must be true or false"),
    ({"metrics_urls": ["http://127.0.0.1:1/metrics"]}, "field 'metrics_urls' must be an object of role: URL"),
    ({"tenants": [{"tenant_id": "x"}]}, "field 'tenants' [0] lacks 'onboarded'"),
    ({"pid": 1.5}, "field 'pid' must be a whole number"),
    ({"worker_pids": [1, "2"]}, "field 'worker_pids' must be a list of process ids"),
    ({"schema_version": SCHEMA_VERSION + 1}, f"field 'schema_version' is {SCHEMA_VERSION + 1}, newer than"),
    ({"schema_version": "1"}, "field 'schema_version' must be a whole number"),
])
def test_a_broken_manifest_names_the_file_and_the_field(tmp_path: Path, changes: dict[str, object],
                                                        message: str) -> None:
    """One line naming the file and what is wrong with which field."""
    path = _broken(tmp_path, **changes)
    with pytest.raises(ManifestError) as caught:
        SiteManifest.read(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text


def test_text_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_NAME
    path.write_text("{not json")
    with pytest.raises(ManifestError, match=f"site manifest '{path}' is not JSON"):
        SiteManifest.read(path)


def test_json_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_NAME
    path.write_text("[]")
    with pytest.raises(ManifestError, match="is not a JSON object"):
        SiteManifest.read(path)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / MANIFEST_NAME
    with pytest.raises(ManifestError, match=f"'{path}' not found .*cmg-harness up"):
        SiteManifest.read(path)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    """A directory where the file should be cannot be read: the error names it (root can read anything else)."""
    (tmp_path / MANIFEST_NAME).mkdir()
    with pytest.raises(ManifestError, match=f"'{tmp_path / MANIFEST_NAME}' is not readable"):
        SiteManifest.read(tmp_path / MANIFEST_NAME)


def test_the_error_is_a_value_error() -> None:
    """Callers that refuse bad input as ValueError refuse a bad manifest the same way."""
    assert issubclass(ManifestError, ValueError)


def test_reading_a_manifest_loads_no_server() -> None:
    """mock_site.manifest is the standard library only: no uvicorn, aiohttp or the site's servers."""
    code = ("import sys, mock_site.manifest, mock_site; mock_site.SiteManifest; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('uvicorn', 'aiohttp', 'starlette', 'httpx', 'cryptography') or m == 'mock_site.site'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}).stdout
    assert loaded.strip() == "[]"
