"""The shared cache of environments (`<cache dir>/envs/<node>-<digest>`, content-addressed) and
pip's caches (`<cache dir>/pip/<build key>`): who is using what, and what `flowctl prune` may
remove.

Two kinds of lock file sit beside each environment, both `flock`s, which the kernel releases
when the process that holds them ends, however it ends (even SIGKILL): nothing is ever stale.

- `<env>.lock`, exclusive, while one flowctl sets the environment up (`env_setup.py`);
- `<env>.inuse`, shared, a *lease*: held by every flowctl process that uses the environment,
  from before it checks the stamp until its service stops. Prune (and `up --build`, which
  rebuilds in place) take it exclusively, without waiting: when that fails, someone uses it.

A pip cache has a lease too (`<cache>.inuse`), held while a setup runs pip with it.

    lease = FileLock(lease_path(env))
    await lease.acquire(shared=True)          # waits (cancellably) while a prune removes it
    ...
    lease.release()
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


def lock_path(env: Path) -> Path:
    """The lock held while `env` is being set up."""
    return env.with_name(env.name + ".lock")


def lease_path(env: Path) -> Path:
    """The lock a user of `env` holds shared (see the module's docstring)."""
    return env.with_name(env.name + ".inuse")


class FileLock:
    """A `flock` on one file, taken shared or exclusive; `acquire` polls, so waiting for it
    never blocks the event loop and can be cancelled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, *, shared: bool, create: bool = True) -> bool:
        """Take (or convert to) the lock without waiting; False when someone else holds it in
        a way that conflicts. `create=False`: a lock file that is not there is nobody's, and
        is not made (True, holding nothing)."""
        while True:
            fresh = self._fd is None
            if self._fd is None:
                if not create and not self.path.exists():
                    return True
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if fresh:
                    self.release()
                return False
            if not fresh or self._same_file():
                return True
            self.release()  # a prune removed the file while we waited for it: lock the new one

    def _same_file(self) -> bool:
        assert self._fd is not None
        try:
            return os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    async def acquire(self, *, shared: bool, on_wait: Callable[[], None] | None = None, poll: float = 0.2) -> None:
        waited = False
        while not self.try_acquire(shared=shared):
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            await asyncio.sleep(poll)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def held_exclusively(*paths: Path, create: bool = True) -> Iterator[bool]:
    """Try to hold every lock in `paths` exclusively at once, without waiting; yields whether
    that worked (and releases them at the end). `create=False` only looks: a missing lock
    file counts as free and is not made."""
    locks = [FileLock(path) for path in paths]
    try:
        yield all(lock.try_acquire(shared=False, create=create) for lock in locks)
    finally:
        for lock in locks:
            lock.release()


# -- what prune sees ------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """One environment or pip cache in the shared cache dir."""

    path: Path
    kind: str  # "env" or "pip"
    bytes: int

    @property
    def locks(self) -> tuple[Path, ...]:
        """What must be held exclusively to remove it: no setup and no user."""
        if self.kind == "env":
            return (lock_path(self.path), lease_path(self.path))
        return (lease_path(self.path),)


def cache_entries(cache_dir: Path) -> list[CacheEntry]:
    """The environments and pip caches under `cache_dir`, oldest first."""
    entries = []
    for kind, folder in (("env", cache_dir / "envs"), ("pip", cache_dir / "pip")):
        with contextlib.suppress(FileNotFoundError):
            for path in folder.iterdir():
                if path.is_dir() and not path.is_symlink():
                    entries.append(CacheEntry(path, kind, tree_bytes(path)))
    return sorted(entries, key=lambda entry: _mtime(entry.path))


def remove_entry(entry: CacheEntry) -> bool:
    """Remove it, unless it is being set up or used (then False, and nothing is touched)."""
    with held_exclusively(*entry.locks) as free:
        if not free:
            return False
        shutil.rmtree(entry.path, ignore_errors=True)
        for lock in entry.locks:
            with contextlib.suppress(OSError):
                lock.unlink()
        return not entry.path.exists()


def in_use(entry: CacheEntry) -> bool:
    """Whether a flowctl uses or sets it up now (a look that leaves no lock file behind)."""
    with held_exclusively(*entry.locks, create=False) as free:
        return not free


def tree_bytes(path: Path) -> int:
    """Bytes the files under `path` take (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["CacheEntry", "FileLock", "cache_entries", "held_exclusively", "in_use", "lease_path", "lock_path", "remove_entry", "tree_bytes"]
