"""Importing user code: every module of a dags folder, or one ``MODULE:FUNC`` target.

A dags file that fails to import is reported (logged, and kept in
``Registry.import_errors`` for the dashboard) and the other files still load. A file's
schedules are added only if the whole file imported, so a half-run module never
registers half its schedules.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from scheduler.errors import InvalidTargetError
from scheduler.registry import REGISTRY, Registry

log = logging.getLogger(__name__)

#: The bundled examples (``gnomon up --examples``): ``scheduler/examples`` links to the
#: top-level ``examples/`` in a checkout and is a real folder inside the wheel.
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass
class LoadResult:
    modules: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    #: file path -> one-line error
    errors: dict[str, str] = field(default_factory=dict)


def load_dags(directory: str | Path, registry: Registry = REGISTRY) -> LoadResult:
    """Import every ``*.py`` in ``directory`` (not recursively) and register its schedules.

    The folder goes on ``sys.path`` so dags files can import their sibling modules.
    """
    folder = Path(directory).resolve()
    if not folder.is_dir():
        raise InvalidTargetError(f"No dags folder {str(folder)!r}")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    result = LoadResult()
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")):
            continue
        collected = Registry()
        try:
            with collected.collecting():
                module = _import_file(path)
            registry.merge(collected)
        except Exception as error:  # any user error: report it, load the other files
            message = _one_line(error)
            result.errors[str(path)] = message
            registry.import_errors[str(path)] = message
            log.warning("Could not load dags file %s: %s", path, message, exc_info=True)
            continue
        registry.import_errors.pop(str(path), None)
        result.modules.append(module.__name__)
        result.schedules.extend(schedule.name for schedule in collected)
    return result


def load_examples(registry: Registry = REGISTRY) -> LoadResult:
    if not EXAMPLES_DIR.is_dir():
        raise InvalidTargetError(
            f"The bundled examples are not installed (looked in {EXAMPLES_DIR})"
        )
    return load_dags(EXAMPLES_DIR, registry)


def _import_file(path: Path) -> ModuleType:
    """Import a file under its own stem, unless another module already has that name."""
    name = path.stem
    taken = sys.modules.get(name)
    if taken is not None and Path(getattr(taken, "__file__", "") or "").resolve() != path:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        name = f"gnomon_dags_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
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
        raise InvalidTargetError(f"Cannot import {module_part!r}: {_one_line(error)}") from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidTargetError(f"Module {module_part!r} has no {attribute!r}") from None
    return value


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return text[0] if text else type(error).__name__
