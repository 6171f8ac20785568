"""A native-form flow plus the way back from each of its paths to a line:column in the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Location
from ..loader import LoadedDocument, PathKey

if TYPE_CHECKING:
    from ..spec import FlowSpec


@dataclass(frozen=True)
class LoweredDocument:
    """Native-form data. `origin` maps a native path to the path in the file it came from;
    a path without an entry (or under none) is looked up as is."""

    data: Any
    source: LoadedDocument
    origin: dict[PathKey, PathKey] = field(default_factory=dict)
    form: str = "native"

    @classmethod
    def identity(cls, doc: LoadedDocument) -> LoweredDocument:
        return cls(data=doc.data, source=doc)

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in self.origin:
                original = self.origin[prefix]
                # the rest of the path is usually spelled the same in both forms
                return self.source.locate((*original, *path[cut:]), key=key)
        return self.source.locate(path, key=key)


@dataclass(frozen=True)
class LocatedSpec:
    spec: FlowSpec
    document: LoweredDocument

    @property
    def file(self) -> str:
        return self.document.source.file

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        return self.document.locate(path, key=key)
