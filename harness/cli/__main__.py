"""``python -m harness.cli``: the same as the ``cmg-harness`` script."""

from __future__ import annotations

import sys

from harness.cli import main

sys.exit(main())
