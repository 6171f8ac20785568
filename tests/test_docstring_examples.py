"""Every module's docstring examples run (the way watchfiles runs its docs' examples): an
example that no longer does what it says fails here. Examples that need a running server or
a model say `# doctest: +SKIP`; plain code blocks (no `>>>`) are prose."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

#: the package's parts (each its own folder, mapped in by setuptools' package-dir)
PACKAGES = ("flowctl", "flowctl.engine", "flowctl.nodes", "flowctl.server")


def _modules() -> list[str]:
    names = set(PACKAGES)
    for package in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if not info.name.endswith("__main__"):  # running that is the CLI
                names.add(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_part_of_the_package_is_found() -> None:
    for package in ("flowctl.engine.templating", "flowctl.engine.errors", "flowctl.nodes.restart", "flowctl.server.errors"):
        assert package in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
