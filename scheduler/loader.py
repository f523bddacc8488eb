"""Importing user code: every module of a dags folder, or one ``MODULE:FUNC`` target.

A dags file that fails to import is reported (logged, and kept in
``Registry.import_errors`` for the dashboard) and the other files still load. A file's
schedules are added only if the whole file imported, so a half-run module never
registers half its schedules. ``DagsFolder`` re-imports a folder's changed files, for
``gnomon up`` to pick up edits while it runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from executor import errors
from scheduler.errors import InvalidTargetError, ScheduleNotFoundError
from scheduler.registry import REGISTRY, Registry

log = logging.getLogger(__name__)

#: The bundled examples (``gnomon up --examples``): ``scheduler/examples`` links to the
#: top-level ``examples/`` in a checkout and is a real folder inside the wheel.
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
#: An import error is reported in one line of at most this many characters.
MAX_ERROR_CHARS = 500
#: Seconds a dags file may take to import (Airflow's ``dagbag_import_timeout``): a file
#: that blocks at import (a query, a lock, an endless loop) is reported and skipped
#: instead of holding up ``gnomon up`` and every other file.
IMPORT_TIMEOUT = float(os.environ.get("GNOMON_DAG_IMPORT_TIMEOUT", "30"))


class DagImportTimeout(Exception):
    """A dags file took longer than ``IMPORT_TIMEOUT`` to import."""


@dataclass
class LoadResult:
    modules: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    #: file path -> one-line error
    errors: dict[str, str] = field(default_factory=dict)
    #: schedules forgotten because their file is gone or no longer registers them
    removed: list[str] = field(default_factory=list)


def load_dags(directory: str | Path, registry: Registry = REGISTRY) -> LoadResult:
    """Import every ``*.py`` in ``directory`` (not recursively) and register its schedules."""
    return DagsFolder(directory, registry).refresh()


@dataclass(frozen=True)
class _Stamp:
    """What says a file changed: its modification time and size."""

    mtime_ns: int
    size: int


def _stamp(path: Path) -> _Stamp | None:
    """The file's stamp, or the link's own for a symlink that does not resolve (its
    import then reports why); None for a file removed while listing."""
    for look in (path.stat, path.lstat):
        try:
            info = look()
        except OSError:  # gone, dangling, or a symlink loop
            continue
        return _Stamp(info.st_mtime_ns, info.st_size)
    return None


class DagsFolder:
    """A dags folder kept in step with a registry: ``refresh`` imports the files that
    are new or changed since the last call, and forgets the schedules of files that are
    gone or no longer register them.

    A file that fails to import keeps the schedules of its last good version, and its
    error stays in ``Registry.import_errors`` until it imports again. The folder goes at
    the end of ``sys.path`` so dags files can import their sibling modules, without a
    dags file named like a module (``calendar.py``) shadowing it.
    """

    def __init__(self, directory: str | Path, registry: Registry = REGISTRY) -> None:
        try:
            self.folder = Path(directory).resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop
            raise InvalidTargetError(
                f"Cannot read dags folder {str(directory)!r}: {error}"
            ) from None
        self.registry = registry
        self._stamps: dict[Path, _Stamp] = {}
        #: file -> names of the schedules its last good import registered
        self._names: dict[Path, set[str]] = {}

    def refresh(self) -> LoadResult:
        """Bring the registry up to date with the folder; ``LoadResult.removed`` names
        the schedules it forgot."""
        files = self._scan()
        if str(self.folder) not in sys.path:
            sys.path.append(str(self.folder))
        result = LoadResult()
        for path in set(self._stamps) - set(files):
            self._forget_file(path, result)
        for path, stamp in files.items():
            if self._stamps.get(path) != stamp:
                self._stamps[path] = stamp
                self._load_file(path, result)
        return result

    def _scan(self) -> dict[Path, _Stamp]:
        try:
            if not self.folder.is_dir():
                raise InvalidTargetError(f"No dags folder {str(self.folder)!r}")
            files = {}
            for path in sorted(self.folder.glob("*.py")):
                if path.name.startswith(("_", ".")):
                    continue
                stamp = _stamp(path)
                if stamp is not None:
                    files[path] = stamp
            return files
        except OSError as error:
            raise InvalidTargetError(
                f"Cannot read dags folder {str(self.folder)!r}: {error}"
            ) from None

    def _load_file(self, path: Path, result: LoadResult) -> None:
        shown = _printable(str(path))
        collected = Registry()
        try:
            with collected.collecting(), _deadline(IMPORT_TIMEOUT):
                module = _import_file(path)
            self.registry.merge(collected)  # all the file's schedules, or none
        except KeyboardInterrupt:
            raise  # Ctrl-C while the files load: stop `gnomon up`
        except BaseException as error:  # sys.exit() too: report it, load the other files
            message = one_line(error, path)
            result.errors[shown] = message
            self.registry.import_errors[shown] = message
            log.warning("Could not load dags file %s: %s", shown, message)
            log.debug("Import of %s failed", shown, exc_info=True)
            return
        names = set(collected.names())
        for name in sorted(self._names.get(path, set()) - names):
            with suppress(ScheduleNotFoundError):
                self.registry.remove(name)
            result.removed.append(name)
        self._names[path] = names
        self.registry.import_errors.pop(shown, None)
        result.modules.append(module.__name__)
        result.schedules.extend(sorted(names))

    def _forget_file(self, path: Path, result: LoadResult) -> None:
        del self._stamps[path]
        self.registry.import_errors.pop(_printable(str(path)), None)
        for name in sorted(self._names.pop(path, set())):
            with suppress(ScheduleNotFoundError):
                self.registry.remove(name)
            result.removed.append(name)
        log.info("Dags file %s is gone", _printable(str(path)))


def load_examples(registry: Registry = REGISTRY) -> LoadResult:
    if not EXAMPLES_DIR.is_dir():
        raise InvalidTargetError(
            f"The bundled examples are not installed (looked in {EXAMPLES_DIR})"
        )
    return load_dags(EXAMPLES_DIR, registry)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block with ``DagImportTimeout`` after ``seconds``.

    SIGALRM, as Airflow does: a thread cannot be stopped from outside, and an import
    must run in this process to register its schedules here. Signals reach only the
    main thread, so elsewhere (a test's worker thread) the block runs unbounded.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise DagImportTimeout(f"import took longer than {seconds:g} s (GNOMON_DAG_IMPORT_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles a file from its source on every import: ``__pycache__`` trusts a file's
    mtime in whole seconds and its size, so an edit that kept both would run stale code
    when the file is imported again."""

    def get_code(self, fullname: str) -> CodeType:
        return self.source_to_code(self.get_data(self.path), self.path)


def _import_file(path: Path) -> ModuleType:
    """Import a file under its own stem, unless another module has (or the standard
    library could later want) that name."""
    name = path.stem
    taken = sys.modules.get(name)
    other = taken is not None and Path(getattr(taken, "__file__", "") or "").resolve() != path
    if other or name in sys.stdlib_module_names:
        digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:8]
        name = f"gnomon_dags_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_target(target: str) -> Any:
    """Resolve ``MODULE:FUNC``, where MODULE is a dotted name or a path to a ``.py`` file."""
    module_part, sep, attribute = target.rpartition(":")
    if not sep or not module_part or not attribute:
        raise InvalidTargetError(f"Expected MODULE:FUNC, got {target!r}")
    try:
        if module_part.endswith(".py") or "/" in module_part:
            path = Path(module_part).resolve()
            if not path.is_file():
                raise InvalidTargetError(f"No file {module_part!r}")
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            module = _import_file(path)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_part)
    except InvalidTargetError:
        raise
    except Exception as error:
        raise InvalidTargetError(f"Cannot import {module_part!r}: {one_line(error)}") from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidTargetError(f"Module {module_part!r} has no {attribute!r}") from None
    return value


def one_line(error: BaseException, path: Path | None = None) -> str:
    """A user's error in one printable line: ``RuntimeError: config missing (at half.py,
    line 9)``, with the deepest line of ``path`` it passed through (a SyntaxError names
    its own), so the log needs no traceback."""
    line = errors.one_line(error)
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 3] + "..."
    if path is not None and not isinstance(error, SyntaxError):
        where = _line_in(error, path)
        if where is not None:
            line += f" (at {path.name}, line {where})"
    return _printable(line)


def _line_in(error: BaseException, path: Path) -> int | None:
    found = None
    for frame, number in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == str(path):
            found = number
    return found


def _printable(text: str) -> str:
    """A file name or a message that can be logged, echoed and put in a page as UTF-8:
    undecodable bytes in file names arrive as lone surrogates."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
