"""The longer CLI commands (client, run), kept apart from argument parsing in ``harness.cli``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

REQUIRED_MANIFEST_KEYS = ("cmg_url", "ca_file", "crl_url", "entra_url", "tenant_id", "role_id", "faults_url",
                          "faults_token")


class CommandError(Exception):
    """A one-line message for the user (exit status 2)."""


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a site manifest (``site.json``), refusing a missing, unreadable or incomplete one with its path named."""
    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommandError(f"site manifest {str(path)!r} not found (start a site with `cmg-harness up`)") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"site manifest {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise CommandError(f"site manifest {str(path)!r} is not a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CommandError(f"site manifest {str(path)!r} lacks {', '.join(missing)}")
    return manifest
