"""Loading dags folders and ``MODULE:FUNC`` targets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scheduler.errors import InvalidTargetError
from scheduler.loader import EXAMPLES_DIR, import_target, load_dags
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
