"""Loading dags folders and ``MODULE:FUNC`` targets."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from scheduler.errors import InvalidTargetError
from scheduler.loader import EXAMPLES_DIR, DagsFolder, LoadResult, import_target, load_dags
from scheduler.registry import Registry

GOOD = """
import ray
import scheduler
from helper import GREETING  # a sibling module of the dags file

@ray.remote
def hello():
    return GREETING

@scheduler.register(interval=60)
def {name}(run):
    return hello.bind()
"""


def _write(folder: Path, filename: str, text: str) -> Path:
    path = folder / filename
    path.write_text(textwrap.dedent(text))
    return path


def test_a_broken_file_is_reported_and_the_others_load(tmp_path, name):
    _write(tmp_path, "helper.py", "GREETING = 'hi'\n")
    _write(tmp_path, "good.py", GOOD.format(name=name))
    broken = _write(tmp_path, "broken.py", "import scheduler\ndef broken(:\n")
    half = _write(
        tmp_path,
        "half.py",
        f"""
        import scheduler

        @scheduler.register(name="{name}_half")
        def first(run):
            return None

        raise RuntimeError("config missing")
    """,
    )
    bad_cron = _write(
        tmp_path,
        "bad_cron.py",
        """
        import scheduler

        @scheduler.register(cron="0 25 * * *")
        def never(run):
            return None
    """,
    )
    registry = Registry()

    result = load_dags(tmp_path, registry)

    assert registry.names() == [name]
    assert result.schedules == [name]
    assert set(result.errors) == {str(broken), str(half), str(bad_cron)}
    assert result.errors[str(broken)].startswith("SyntaxError")
    assert result.errors[str(half)] == "RuntimeError: config missing (at half.py, line 8)"
    assert "Bad cron expression '0 25 * * *'" in result.errors[str(bad_cron)]
    assert registry.import_errors == result.errors
    assert "helper" not in registry  # a module without register() adds nothing


def test_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(InvalidTargetError, match="No dags folder"):
        load_dags(tmp_path / "nowhere", Registry())


def test_the_examples_load_without_errors():
    registry = Registry()
    result = load_dags(EXAMPLES_DIR, registry)
    assert result.errors == {}
    assert registry.names() == [
        "approval_flow",
        "fanout_report",
        "health_check",
        "nightly_etl",
        "paginated_sync",
    ]


def test_import_target_by_path_and_by_module_name(tmp_path):
    path = _write(tmp_path, "targets_mod.py", "VALUE = {'nested': 42}\n")
    assert import_target(f"{path}:VALUE") == {"nested": 42}
    assert import_target("scheduler.registry:run_id").__name__ == "run_id"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "Expected MODULE:FUNC"),
        ("scheduler.registry:", "Expected MODULE:FUNC"),
        ("no_such_module_xyz:main", "Cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        ("scheduler.registry:nope", "Module 'scheduler.registry' has no 'nope'"),
        ("/no/such/file.py:main", "No file '/no/such/file.py'"),
    ],
)
def test_bad_targets_are_one_line_errors(target, message):
    with pytest.raises(InvalidTargetError) as caught:
        import_target(target)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


FLOW = """
import scheduler

@scheduler.register(name="{name}", {trigger}, params={{"limit": {limit}}})
def flow(run):
    return None
"""


def _flow(folder: Path, name: str, trigger: str = "interval=60", limit: int = 1) -> Path:
    return _write(folder, "flows.py", FLOW.format(name=name, trigger=trigger, limit=limit))


def test_a_refresh_picks_up_added_changed_and_removed_schedules(tmp_path, name):
    registry = Registry()
    folder = DagsFolder(tmp_path, registry)
    _flow(tmp_path, name)
    assert folder.refresh().schedules == [name]
    first = registry.get(name)

    assert folder.refresh() == LoadResult()  # nothing changed: nothing imported again
    assert registry.get(name) is first

    _flow(tmp_path, name, trigger='cron="*/5 * * * *"', limit=7)
    _write(tmp_path, "more.py", FLOW.format(name=f"{name}_more", trigger="interval=5", limit=2))
    result = folder.refresh()
    assert sorted(result.schedules) == [name, f"{name}_more"]
    changed = registry.get(name)
    assert changed.trigger.describe() == "cron */5 * * * * (UTC)"
    assert changed.params == {"limit": 7}
    assert changed.code_version != first.code_version

    (tmp_path / "more.py").unlink()
    _write(
        tmp_path, "flows.py", FLOW.format(name=f"{name}_renamed", trigger="interval=60", limit=1)
    )
    result = folder.refresh()
    assert sorted(result.removed) == [name, f"{name}_more"]
    assert registry.names() == [f"{name}_renamed"]


def test_a_file_that_breaks_keeps_its_last_good_version_until_it_is_fixed(tmp_path, name):
    registry = Registry()
    folder = DagsFolder(tmp_path, registry)
    path = _flow(tmp_path, name, limit=1)
    folder.refresh()

    path.write_text(path.read_text() + "\nraise RuntimeError('half an edit')\n")
    result = folder.refresh()
    assert result.errors == {str(path): "RuntimeError: half an edit (at flows.py, line 8)"}
    assert registry.import_errors == result.errors
    assert registry.get(name).params == {"limit": 1}  # the last good version runs on

    _flow(tmp_path, name, limit=2)
    assert folder.refresh().errors == {}
    assert registry.import_errors == {}
    assert registry.get(name).params == {"limit": 2}


def test_an_edit_that_keeps_the_size_and_the_second_is_imported_again(tmp_path, name, monkeypatch):
    """Python's bytecode cache would take the file for unchanged."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    registry = Registry()
    folder = DagsFolder(tmp_path, registry)
    path = _flow(tmp_path, name, limit=1)
    folder.refresh()
    stamp = path.stat()

    _flow(tmp_path, name, limit=2)  # same length
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    folder.refresh()

    assert registry.get(name).params == {"limit": 2}
