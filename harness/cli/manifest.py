"""The site manifest (``site.json``) as the commands read it: refused with its path named when it is unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError

REQUIRED_MANIFEST_KEYS = ("cmg_url", "ca_file", "crl_url", "entra_url", "tenant_id", "role_id", "site_code",
                          "policy_interval_s", "faults_url", "faults_token")


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a site manifest (``site.json``), refusing a missing, unreadable or incomplete one with its path named."""
    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CliError(f"site manifest {str(path)!r} not found (start a site with `cmg-harness up`)") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"site manifest {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise CliError(f"site manifest {str(path)!r} is not a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CliError(f"site manifest {str(path)!r} lacks {', '.join(missing)}")
    return manifest
