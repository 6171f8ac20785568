"""Load a YAML flow file into plain Python values plus the line:column of every key and value.

ruamel.yaml keeps positions on its round-trip containers; we copy them into a flat table
keyed by the path from the document root (`("nodes", "vllm", "port")`), so that later stages
can validate plain dicts with pydantic and still point at the exact place in the file.

    >>> doc = load_text("a:\\n  b: 1\\n", "f.yml")
    >>> doc.locate(("a", "b"))
    Location(file='f.yml', line=2, column=6)

A flow file is untrusted text (it may be saved over a served flow by anyone who can write
it), so loading is bounded before it can cost much: the file's size (`MAX_FLOW_BYTES`), the
nesting depth (`MAX_DEPTH`, checked while composing, before Python's recursion limit is
near) and the number of values once YAML aliases are expanded (`MAX_VALUES`, counted on the
shared nodes before anything is expanded, so a "billion laughs" file fails in milliseconds).
Each limit is a `FlowError` with a location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scanner import Scanner

from .errors import FlowError, Location

PathKey = tuple[str | int, ...]

#: largest flow file read, in bytes (real flows are a few kB; a prompt library is well under this)
MAX_FLOW_BYTES = 2 * 1024 * 1024
#: deepest nesting of mappings and lists in a flow file
MAX_DEPTH = 100
#: most values (mappings, lists, scalars) a flow may hold once its aliases are expanded
MAX_VALUES = 200_000


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
        with path.open("rb") as handle:
            raw = handle.read(MAX_FLOW_BYTES + 1)
    except FileNotFoundError:
        raise FlowError(f"flow file '{path}' does not exist", hint="check the path, or run from the folder that holds it") from None
    except OSError as exc:
        raise FlowError(f"cannot read flow file '{path}': {exc.strerror or exc}") from None
    return load_bytes(raw, str(path))


def load_bytes(raw: bytes, file: str) -> LoadedDocument:
    """Load a flow file's bytes (at most `MAX_FLOW_BYTES`; one more byte means "too big")."""
    check_size(len(raw), file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlowError(f"the flow file is not UTF-8: {exc.reason} at byte {exc.start}", location=Location(file, 1, 1)) from None
    return load_text(text, file)


def check_size(size: int, file: str) -> None:
    if size > MAX_FLOW_BYTES:
        raise FlowError(
            f"the flow file is larger than {MAX_FLOW_BYTES // (1024 * 1024)} MB",
            location=Location(file, 1, 1),
            hint="a flow describes nodes; keep large data (prompts, schemas) in files the nodes read",
        )


class _TooDeep(MarkedYAMLError):
    pass


class BoundedComposer(Composer):
    """ruamel's composer with a nesting limit: it recurses once per level, so a file nested
    thousands deep would end in a RecursionError (a traceback) instead of an error."""

    _nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._nesting += 1
        try:
            if self._nesting > MAX_DEPTH:
                mark = self.parser.peek_event().start_mark
                raise _TooDeep(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1


class _FlowDepthLimit:
    """Mixed into ruamel's scanner: `[`/`{` nested past `MAX_DEPTH` stops the scan at once
    (the scanner's work per token grows with the flow nesting: thousands of `[` take seconds
    before the composer would see the depth)."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        level = len(getattr(self, "flow_context", ())) or getattr(self, "flow_level", 0)
        if level >= MAX_DEPTH:
            raise _TooDeep(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=self.reader.get_mark())  # type: ignore[attr-defined]
        super().fetch_flow_collection_start(TokenClass, to_push)  # type: ignore[misc]


def bounded_yaml(typ: str = "rt") -> YAML:
    """A ruamel `YAML` (pure Python: the C parser cannot be bounded) whose loading stops at
    `MAX_DEPTH` levels of nesting."""
    yaml = YAML(typ=typ, pure=True)
    yaml.Composer = BoundedComposer
    scanner = yaml.Scanner or Scanner  # `safe` picks its scanner when it loads
    yaml.Scanner = type(f"Bounded{scanner.__name__}", (_FlowDepthLimit, scanner), {})
    return yaml


def load_text(text: str, file: str = "<string>") -> LoadedDocument:
    check_size(len(text), file)
    yaml = bounded_yaml("rt")
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
    _check_expanded_size(root, file)
    values: dict[PathKey, tuple[int, int]] = {(): (1, 1)}
    keys: dict[PathKey, tuple[int, int]] = {}
    data = _plain(root, (), values, keys)
    if data is None:
        data = {}
    return LoadedDocument(data=data, file=file, value_positions=values, key_positions=keys)


def _check_expanded_size(root: Any, file: str) -> None:
    """Count the values `root` holds with every alias expanded, without expanding anything:
    an aliased container is one shared object, so its count is computed once. Raises a
    located FlowError at the container whose expansion passes `MAX_VALUES`."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not yet counted: meeting one again is a cycle
    # iterative post-order walk (depth is bounded already, but this keeps the stack flat)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (CommentedMap, CommentedSeq)) or (id(node) in sizes and not children_done):
            continue
        items = list(node.values()) if isinstance(node, CommentedMap) else list(node)
        if not children_done:
            if id(node) in open_nodes:
                line, column = _position(node)
                raise FlowError("a YAML alias refers to a mapping or list that contains it", location=Location(file, line, column), hint="a flow cannot hold itself")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((item, False) for item in items if isinstance(item, (CommentedMap, CommentedSeq)) and id(item) not in sizes)
            continue
        open_nodes.discard(id(node))
        total = 1 + sum(sizes.get(id(item), 1) for item in items)
        if total > MAX_VALUES:
            line, column = _position(node)
            raise FlowError(
                f"this expands to more than {MAX_VALUES:,} values (YAML aliases repeated inside each other)",
                location=Location(file, line, column),
                hint="use fewer nested `*alias` references",
            )
        sizes[id(node)] = total


def _position(node: Any) -> tuple[int, int]:
    try:
        return node.lc.line + 1, node.lc.col + 1
    except (AttributeError, TypeError):
        return 1, 1


def _plain(node: Any, path: PathKey, values: dict[PathKey, tuple[int, int]], keys: dict[PathKey, tuple[int, int]]) -> Any:
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
