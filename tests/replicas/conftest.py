"""Fixtures for the replica tests (helpers in replicas_support.py beside this file)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from supervision.supervision_support import kill_marked


@pytest.fixture
def mark() -> Iterator[str]:
    """A fresh marker for the processes a test makes flowctl start; whatever carries it at
    teardown is SIGKILLed."""
    value = uuid.uuid4().hex
    try:
        yield value
    finally:
        kill_marked(value)
