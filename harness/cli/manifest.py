"""The site manifest (``site.json``) as the commands read it: a :class:`SiteManifest`, or a one-line CliError."""

from __future__ import annotations

from pathlib import Path

from harness.cli.errors import CliError
from mock_site.manifest import ManifestError, SiteManifest


def load_manifest(path: Path) -> SiteManifest:
    """Read a site manifest, refusing a missing, unreadable or incomplete one with its path and field named."""
    try:
        return SiteManifest.read(Path(path))
    except ManifestError as error:
        raise CliError(str(error)) from None
