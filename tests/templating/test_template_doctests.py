"""The examples in the templating modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["", ".ast", ".lexer", ".scalar", ".parser", ".cast", ".evaluate", ".value", ".infer"]


@pytest.mark.parametrize("suffix", MODULES)
def test_docstring_examples(suffix: str) -> None:
    module = importlib.import_module("flowctl.engine.templating" + suffix)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
