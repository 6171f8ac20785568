"""Well-known paths for the test suite."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
FAKE_VLLM = TESTS_DIR / "servers" / "fake_vllm.py"
PYTHON = sys.executable
