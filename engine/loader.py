"""Load a YAML flow file into plain Python values plus the line:column of every key and value.

ruamel.yaml keeps positions on its round-trip containers; we copy them into a flat table
keyed by the path from the document root (`("nodes", "vllm", "port")`), so that later stages
can validate plain dicts with pydantic and still point at the exact place in the file.

    >>> doc = load_text("a:\\n  b: 1\\n", "f.yml")
    >>> doc.locate(("a", "b"))
    Location(file='f.yml', line=2, column=6)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import FlowError, Location

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedDocument:
    """A parsed flow file: its data, where it came from, and where each item sits in it."""

    data: Any
    file: str
    value_positions: dict[PathKey, tuple[int, int]] = field(repr=False)
    key_positions: dict[PathKey, tuple[int, int]] = field(repr=False)

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        """The position of `path`'s value (or its key), falling back to the nearest ancestor."""
        table = self.key_positions if key else self.value_positions
        probe = tuple(path)
        while probe:
            if probe in table:
                line, column = table[probe]
                return Location(self.file, line, column)
            if not key and probe in self.key_positions:
                line, column = self.key_positions[probe]
                return Location(self.file, line, column)
            probe = probe[:-1]
        line, column = table.get((), (1, 1))
        return Location(self.file, line, column)


def load_file(path: str | Path) -> LoadedDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowError(f"flow file '{path}' does not exist", hint="check the path, or run from the folder that holds it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(f"cannot read flow file '{path}': {exc}") from None
    return load_text(text, str(path))


def load_text(text: str, file: str = "<string>") -> LoadedDocument:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "found duplicate key" in str(exc):
            problem = "duplicate key " + str(exc).split("duplicate key", 1)[1].split("\n", 1)[0].strip()
        raise FlowError(f"invalid YAML: {problem}", location=location, hint="fix the YAML syntax at this position") from None
    except YAMLError as exc:
        raise FlowError(f"invalid YAML: {exc}", location=Location(file, 1, 1)) from None
    values: dict[PathKey, tuple[int, int]] = {(): (1, 1)}
    keys: dict[PathKey, tuple[int, int]] = {}
    data = _plain(root, (), values, keys)
    if data is None:
        data = {}
    return LoadedDocument(data=data, file=file, value_positions=values, key_positions=keys)


def _plain(node: Any, path: PathKey, values: dict, keys: dict) -> Any:
    """Convert ruamel containers to dict/list, recording 1-based positions on the way."""
    if isinstance(node, CommentedMap):
        result: dict[str, Any] = {}
        for key, value in node.items():
            key_text = str(key)
            child = (*path, key_text)
            try:
                kline, kcol = node.lc.key(key)
                keys[child] = (kline + 1, kcol + 1)
                vline, vcol = node.lc.value(key)
                values[child] = (vline + 1, vcol + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            result[key_text] = _plain(value, child, values, keys)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            try:
                line, col = node.lc.item(index)
                values[child] = (line + 1, col + 1)
                keys[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_plain(value, child, values, keys))
        return items
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node
