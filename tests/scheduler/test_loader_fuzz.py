"""Broken dags files, by hand and generated: each one is reported in one line naming the
file, the good files next to them load and fire, and the scheduler keeps running."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.status import WorkflowStatus
from executor.store import SqlStore
from scheduler import loader
from scheduler.errors import DagFactoryError, InvalidTargetError
from scheduler.loader import MAX_ERROR_CHARS, load_dags
from scheduler.registry import Registry
from tests.scheduler.processes import GnomonUp, free_port
from tests.waiting import eventually
from web import create_app

HEADER = "import scheduler\n\n\ndef factory(run):\n    return None\n\n\n"


def _register(**options: object) -> str:
    arguments = ", ".join(f"{key}={value}" for key, value in options.items())
    return HEADER + f"scheduler.register(factory, {arguments})\n"


#: File name -> contents, each broken in its own way, with what its error must say.
BROKEN: dict[str, tuple[str | bytes, str]] = {
    "syntax.py": ("import scheduler\ndef broken(:\n", "SyntaxError"),
    "raises.py": ("x = 1\nraise RuntimeError('config missing')\n", "RuntimeError: config"),
    "exits.py": ("import sys\nsys.exit(3)\n", "SystemExit: 3 (at exits.py, line 2)"),
    "exits_bare.py": ("raise SystemExit\n", "SystemExit (at exits_bare.py, line 1)"),
    "base_exception.py": ("raise BaseException('odd')\n", "BaseException: odd"),
    "generator_exit.py": ("raise GeneratorExit\n", "GeneratorExit"),
    "binary.py": (bytes(range(256)) * 4, "Error"),
    "latin1.py": ("x = 'café'\n".encode("latin-1"), "SyntaxError"),
    "nul.py": (b"x = 1\x00\n", "null bytes"),
    "empty_message.py": ("raise ValueError('\\n\\n')\n", "ValueError (at empty_message.py"),
    "huge_message.py": ("raise ValueError('x' * 1_000_000)\n", "ValueError: xxx"),
    "surrogate.py": ("raise ValueError('\\udcff')\n", "ValueError: \\udcff"),
    "unprintable.py": (
        "class Odd(Exception):\n    def __str__(self):\n        raise TypeError\nraise Odd()\n",
        "Odd (at unprintable.py, line 4)",
    ),
    "nested.py": ("x = " + "(" * 500 + ")" * 500 + "\n", "Error"),
    "missing_module.py": ("import no_such_module_for_gnomon\n", "ModuleNotFoundError"),
    "bad_cron.py": (_register(cron="'0 25 * * *'"), "Bad cron expression '0 25 * * *'"),
    "six_fields.py": (_register(cron="'* * * * * *'"), "Bad cron expression"),
    "empty_cron.py": (_register(cron="''"), "Bad cron expression"),
    "zero_step.py": (_register(cron="'0 3 * * */0'"), "Bad cron expression"),
    "bad_zone.py": (_register(cron="'0 3 * * *'", timezone="'Mars/Olympus'"), "Mars/Olympus"),
    "zone_none.py": (_register(timezone="None"), "Unknown time zone None"),
    "negative_interval.py": (_register(interval="-5"), "interval must be a positive"),
    "zero_interval.py": (_register(interval="__import__('datetime').timedelta(0)"), "interval"),
    "nan_interval.py": (_register(interval="float('nan')"), "interval must be a positive"),
    "inf_interval.py": (_register(interval="float('inf')"), "interval must be a positive"),
    "huge_interval.py": (_register(interval="1e300"), "interval must be a positive"),
    "two_triggers.py": (_register(cron="'* * * * *'", interval="5"), "Give one of"),
    "at_text.py": (_register(at="'2026-01-01'"), "at must be a datetime"),
    "slash_name.py": (_register(name="'a/b'", interval="60"), "cannot contain"),
    "nul_name.py": (_register(name="'a\\x00b'", interval="60"), "cannot contain"),
    "long_name.py": (_register(name="'n' * 101", interval="60"), "1 to 100 characters"),
    "nan_params.py": (_register(params="{'x': float('nan')}"), "params must be JSON"),
    "set_params.py": (_register(params="{'x': {1, 2}}"), "params must be JSON"),
    "list_metadata.py": (_register(metadata="[1]"), "metadata must be a dict"),
    "max_active.py": (_register(max_active_runs="0"), "max_active_runs"),
    "not_callable.py": ("import scheduler\nscheduler.register(42, interval=60)\n", "decorates"),
    "unknown_option.py": (_register(crn="'* * * * *'"), "TypeError"),
    "huge_broken.py": ("x = 1\n" * 200_000 + "def broken(:\n", "SyntaxError"),
}


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """Loading adds the dags folders to ``sys.path`` and their modules to ``sys.modules``."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for module in set(sys.modules) - modules:
        del sys.modules[module]


@pytest.fixture
def dashboard(database_url: str, blob_root: Path):
    """``dashboard(service)``: an API client of a dashboard showing ``service``."""

    def make(service: object) -> FlaskClient:
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "STORAGE": str(blob_root),
                "API_TOKEN": "fuzz-token",
                "SCHEDULER": service,
                "TESTING": True,
            }
        )
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = "Bearer fuzz-token"
        return client

    return make


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _good(name: str, stem: str, bad_factories: bool = True) -> str:
    """A dags file with an interval schedule and (``bad_factories``) a factory that raises
    and one that returns a non-DAG; its sibling module supplies the greeting."""
    good = f"""
        import ray
        import scheduler
        from {stem}_helper import GREETING

        @ray.remote
        def hello(text):
            return text

        @scheduler.register(name="{name}", interval=1)
        def good(run):
            return hello.bind(GREETING)
        """
    bad = f"""
        @scheduler.register(name="{name}_raises", interval=1)
        def raises(run):
            raise ValueError("the factory says no")

        @scheduler.register(name="{name}_not_a_dag", interval=1)
        def not_a_dag(run):
            return 42
        """
    return textwrap.dedent(good + bad if bad_factories else good)


def _weird_folders(folder: Path) -> dict[str, str]:
    """Entries that are not plain files, and what their errors must say."""
    (folder / "directory.py").mkdir()
    (folder / "loop.py").symlink_to(folder / "loop.py")
    (folder / "dangling.py").symlink_to(folder / "nowhere" / "target.py")
    _write(folder, "circular_a.py", "from circular_b import B\nA = 1\n")
    _write(folder, "circular_b.py", "from circular_a import A\nB = 2\n")
    undecodable = folder / os.fsdecode(b"bad_\xff_name.py")
    _write(folder, undecodable.name, "raise ValueError('from a badly named file')\n")
    return {
        "directory.py": "IsADirectoryError",
        "loop.py": "Too many levels of symbolic links",
        "dangling.py": "FileNotFoundError",
        "circular_a.py": "cannot import name",
        "circular_b.py": "cannot import name",
        "bad_\\udcff_name.py": "ValueError: from a badly named file",
    }


def test_broken_files_are_reported_and_the_good_ones_fire(
    tmp_path, services, name, store, clean_imports, caplog, dashboard
):
    # Given a dags folder where most files are broken, next to one good file
    stem = f"good_{uuid.uuid4().hex[:8]}"
    _write(tmp_path, f"{stem}_helper.py", "GREETING = 'hi'\n")
    _write(tmp_path, f"{stem}.py", _good(name, stem))
    for filename, (text, _) in BROKEN.items():
        _write(tmp_path, filename, text)
    expected = {filename: message for filename, (_, message) in BROKEN.items()}
    expected.update(_weird_folders(tmp_path))
    _write(tmp_path, "dup_a.py", _register(name=f"'{name}_dup'", interval="60"))
    _write(tmp_path, "dup_b.py", _register(name=f"'{name}_dup'", interval="60"))
    expected["dup_b.py"] = "is registered twice"
    half = _write(
        tmp_path,
        "dup_half.py",  # one fresh name, one taken: the fresh one must not stay registered
        HEADER
        + f"scheduler.register(factory, name='{name}_fresh')\n"
        + f"scheduler.register(lambda run: None, name='{name}_dup')\n",
    )
    expected[half.name] = "is registered twice"
    registry = Registry()

    # When the folder is loaded
    with caplog.at_level(logging.DEBUG, logger="scheduler.loader"):
        result = load_dags(tmp_path, registry)

    # Then each broken file is reported in one printable line naming the problem
    errors = {Path(path).name: message for path, message in result.errors.items()}
    assert set(errors) == set(expected), set(errors) ^ set(expected)
    for filename, message in errors.items():
        assert expected[filename] in message, (filename, message)
        assert "\n" not in message, filename
        assert len(message) <= MAX_ERROR_CHARS + 40, filename
        message.encode("utf-8")  # no lone surrogates: it can be logged and served
    assert registry.import_errors == result.errors
    assert all(Path(path).is_absolute() for path in result.errors)
    # ... logged as one warning each, without a traceback (that is at DEBUG)
    warnings = [
        r for r in caplog.records if r.name == "scheduler.loader" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == len(expected)
    assert all(record.exc_info is None for record in warnings)
    # ... and the good files loaded, the half-registered file left nothing behind
    assert registry.names() == sorted([name, f"{name}_raises", f"{name}_not_a_dag", f"{name}_dup"])

    # When the scheduler runs them
    service = services(registry)

    # Then the good schedule fires, and the bad factories leave FAILED runs saying why
    def runs(schedule: str, status: WorkflowStatus) -> list:
        return [r for r in store.list_workflows(name=schedule) if r.status == status]

    eventually(lambda: runs(name, WorkflowStatus.SUCCESSFUL), what="a tick of the good file")
    for schedule, why in [
        (f"{name}_raises", f"ValueError: the factory says no (at {stem}.py, line 16)"),
        (f"{name}_not_a_dag", "Input should be a DAG (a remote function's .bind(...)), got int"),
    ]:
        failed = eventually(lambda s=schedule: runs(s, WorkflowStatus.FAILED), what=schedule)
        assert why in (failed[0].error or ""), failed[0].error
        with pytest.raises(DagFactoryError if "should be a DAG" in why else ValueError):
            service.trigger(schedule)
    triggered = service.trigger(name, {"extra": 1})
    assert store.get_workflow(triggered).name == name
    assert service.scheduler.running
    # ... and nothing the user got wrong printed a traceback (those are at DEBUG)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
    assert [r.getMessage() for r in loud if r.name.startswith("scheduler")] == []

    # And the dashboard lists every broken file
    page = dashboard(service).get("/schedules").text
    for filename in expected:
        assert filename in page, filename


def test_odd_but_valid_factories_load(tmp_path, clean_imports, name):
    # A functools.partial or a callable object has no __qualname__.
    _write(
        tmp_path,
        "odd.py",
        HEADER
        + "import functools\n\n\nclass Factory:\n    def __call__(self, run):\n"
        + "        return None\n\n\n"
        + f"scheduler.register(functools.partial(factory), name='{name}_partial')\n"
        + f"scheduler.register(Factory(), name='{name}_object', interval=60)\n",
    )
    registry = Registry()
    assert load_dags(tmp_path, registry).errors == {}
    assert registry.names() == [f"{name}_object", f"{name}_partial"]


def test_a_file_named_like_a_standard_module_does_not_shadow_it(tmp_path, clean_imports, name):
    sys.modules.pop("colorsys", None)
    _write(tmp_path, "colorsys.py", _register(name=f"'{name}'", interval="60"))
    registry = Registry()

    assert load_dags(tmp_path, registry).errors == {}

    import colorsys  # whoever imports it later gets the standard library's

    assert registry.names() == [name]
    assert hasattr(colorsys, "rgb_to_hsv")


def test_an_unreadable_dags_folder_is_a_one_line_error(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(InvalidTargetError, match="dags folder") as caught:
        load_dags(loop, Registry())
    assert "\n" not in str(caught.value)


def test_ctrl_c_while_loading_stops_the_loader(tmp_path, clean_imports):
    _write(tmp_path, "interrupts.py", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_dags(tmp_path, Registry())


#: Dags files that never finish importing, each blocked in its own way.
HANGS = {
    "sleeps.py": "import time\nwhile True:\n    time.sleep(0.05)\n",
    "spins.py": "while True:\n    pass\n",
    "waits.py": "import threading\nthreading.Event().wait()\n",
}


def test_a_file_that_hangs_at_import_is_reported_and_the_others_load(
    tmp_path, clean_imports, name, monkeypatch
):
    monkeypatch.setattr(loader, "IMPORT_TIMEOUT", 1.0)
    handler = signal.getsignal(signal.SIGALRM)
    for filename, text in HANGS.items():
        _write(tmp_path, filename, text)
    _write(tmp_path, "zz_good.py", _register(name=f"'{name}'", interval="60"))
    registry = Registry()

    result = load_dags(tmp_path, registry)

    assert registry.names() == [name]
    errors = {Path(path).name: message for path, message in result.errors.items()}
    assert set(errors) == set(HANGS)
    for filename, message in errors.items():
        assert message.startswith("DagImportTimeout: import took longer than 1 s"), message
        assert f"(at {filename}, line" in message
    # ... and the timer is off, its handler put back: nothing interrupts the process later
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == handler


def test_a_huge_good_file_loads(tmp_path, clean_imports, name):
    _write(tmp_path, "huge.py", "x = 1\n" * 300_000 + _register(name=f"'{name}'", interval="60"))
    registry = Registry()
    assert load_dags(tmp_path, registry).errors == {}
    assert registry.names() == [name]


# ------------------------------------------------------------------ generated

_EXCEPTIONS = ["ValueError", "SystemExit", "BaseException", "GeneratorExit", "ImportError"]
_NUMBER = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"float({str(x)!r})"),
)
_SNIPPET = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    st.builds(
        lambda cron, zone: _register(cron=repr(cron), timezone=repr(zone)),
        st.text(alphabet="0123456789*/-,? LW#abcdefjmnostu", max_size=24),
        st.one_of(st.sampled_from(["UTC", "Europe/Berlin", "../etc/passwd", ""]), st.text()),
    ),
    st.builds(lambda number: _register(interval=number), _NUMBER),
    st.builds(lambda text: _register(name=repr(text), interval="60"), st.text(max_size=120)),
    st.builds(lambda number: _register(max_active_runs=number), _NUMBER),
    st.builds(
        lambda kind, text: f"raise {kind}({text!r})\n", st.sampled_from(_EXCEPTIONS), st.text()
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=st.lists(_SNIPPET, min_size=1, max_size=4))
def test_generated_files_never_stop_the_loader(files, clean_imports):
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        good = f"good_{uuid.uuid4().hex[:8]}"
        _write(folder, "good.py", _register(name=repr(good), interval="60"))
        for number, text in enumerate(files):
            _write(folder, f"generated_{number}.py", text)
        registry = Registry()

        result = load_dags(folder, registry)

        assert good in registry
        assert len(result.modules) + len(result.errors) == len(files) + 1
        for path, message in result.errors.items():
            assert Path(path).name.startswith("generated_")
            assert message
            assert "\n" not in message
            assert len(message) <= MAX_ERROR_CHARS + 40
            message.encode("utf-8")


@pytest.mark.slow
def test_gnomon_up_reports_each_broken_file_in_one_line_and_keeps_running(tmp_path, name):
    # Given a dags folder of broken files next to a good one, served by a real `gnomon up`
    dags = tmp_path / "dags"
    dags.mkdir()
    stem = f"good_{uuid.uuid4().hex[:8]}"
    _write(dags, f"{stem}_helper.py", "GREETING = 'hi'\n")
    _write(dags, f"{stem}.py", _good(name, stem, bad_factories=False))
    for filename, (text, _) in BROKEN.items():
        _write(dags, filename, text)
    _write(dags, "hangs.py", HANGS["sleeps.py"])
    database_url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    args = ["--dags", str(dags), "--database-url", database_url, "--storage"]
    args += [str(tmp_path / "blobs"), "--port", str(free_port()), "--ray-address", "local"]
    env = {"GNOMON_HOME": str(tmp_path / "home"), "GNOMON_DAG_IMPORT_TIMEOUT": "8"}
    up = GnomonUp(args, tmp_path / "up.log", env)
    store = SqlStore.create(database_url)
    try:
        # When it starts
        up.wait_for("Press Ctrl-C to stop.", 150)

        # Then each broken file is one error line naming it, with no traceback
        lines = [line for line in up.text().splitlines() if line.startswith("Error: dags file")]
        for filename, (_, message) in BROKEN.items():
            mine = [line for line in lines if f"/{filename} did not load: " in line]
            assert len(mine) == 1, (filename, mine)
            assert message in mine[0], (filename, mine)
        hung = [line for line in lines if "/hangs.py did not load: DagImportTimeout" in line]
        assert len(hung) == 1, lines
        assert "Traceback" not in up.text()
        # ... and the good schedule fires, and the process stops cleanly when asked
        eventually(
            lambda: [r for r in store.list_workflows(name=name) if r.status.value == "SUCCESSFUL"],
            timeout=60,
            what="a tick of the good file",
        )
        assert up.terminate(timeout=60) == 0
    finally:
        up.close()
        store.dispose()
