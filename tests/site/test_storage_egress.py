"""The storage role's egress numbers and the manifest fields of content storage and token devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmg_protocol.clock import FakeClock
from mock_site.manifest import ManifestError, SiteManifest
from mock_site.metrics.storage_egress import MONTH_SITE_SECONDS, StorageEgress
from mock_site.storage import load_or_create_url_key
from mock_site.testing import example_manifest


def test_egress_per_client_per_month_extrapolates_over_site_time() -> None:
    clock = FakeClock(1000.0)
    egress = StorageEgress(clock=clock, time_scale=3600.0)
    assert egress.per_client_month() == 0.0
    egress.served("GUID:A", 100)
    egress.served("GUID:A", 100)
    egress.served("GUID:B", 200)
    clock.now += 24.0  # a site day at 3600x
    assert (egress.bytes_total, egress.downloads, egress.clients) == (400, 3, 2)
    assert egress.per_client_month() == pytest.approx(200 * MONTH_SITE_SECONDS / 86400.0)
    names = {family.name for family in egress.collect()}
    assert names == {"cmg_storage_egress_bytes", "cmg_storage_downloads", "cmg_storage_clients",
                     "cmg_storage_egress_per_client_month_bytes"}
    with pytest.raises(ValueError, match="time scale"):
        StorageEgress(clock=clock, time_scale=0)


def test_the_url_key_is_made_once_and_shared(tmp_path: Path) -> None:
    key = load_or_create_url_key(tmp_path / "pki")
    assert len(key) == 32 and load_or_create_url_key(tmp_path / "pki") == key
    assert (tmp_path / "pki" / "storage-url.key").stat().st_mode & 0o077 == 0


def test_the_manifest_carries_storage_url_and_bulk_token_file(tmp_path: Path) -> None:
    manifest = example_manifest(tmp_path, storage_url="https://127.0.0.1:8444",
                                bulk_token_file=tmp_path / "bulk-registration.token")
    again = SiteManifest.load(manifest.to_json())
    assert (again.storage_url, again.bulk_token_file) == ("https://127.0.0.1:8444", tmp_path / "bulk-registration.token")
    older = example_manifest(tmp_path).to_dict()
    assert "storage_url" not in older and SiteManifest.from_dict(older).storage_url is None
    with pytest.raises(ManifestError, match="storage_url"):
        SiteManifest.from_dict({**older, "storage_url": "ftp://x"})
