"""The wheel carries the templates and static files: a non-editable install serves pages.

The Docker image installs the wheel, so this builds it from a copy of the checkout,
installs it into a fresh virtualenv (dependencies come from the test venv through a
``.pth`` path, the code only from the wheel), and serves the dashboard from there.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "executor", "scheduler", "web", "templates", "examples"]

SERVE = """
import json, sys, urllib.request
import web
from web import create_app, serve
assert web.__file__.startswith(sys.prefix), web.__file__
app = create_app({"DATABASE_URL": "sqlite:///" + sys.argv[1], "STORAGE": sys.argv[2],
                  "API_TOKEN": "wheel-token"})
server = serve(app, "127.0.0.1", 0)
def get(path):
    request = urllib.request.Request(server.url + path.lstrip("/"),
                                     headers={"Authorization": "Bearer wheel-token"})
    with urllib.request.urlopen(request) as response:
        return response.status, response.read().decode()
pages = {path: get(path) for path in ["/login", "/", "/schedules",
         "/static/vendor/htmx-2.0.11/htmx.min.js", "/static/vendor/dagre-3.1.3/dagre.min.js",
         "/static/gnomon.css", "/static/run-graph.js", "/api/v1/openapi.yaml"]}
server.close()
print(json.dumps({"web": web.__file__, "pages": pages}))
"""


def _copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    target.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


@pytest.mark.slow
def test_the_installed_wheel_serves_the_dashboard(tmp_path: Path) -> None:
    # Given a wheel built from the checkout, the way `pip install .` builds it
    source = tmp_path / "src"
    _copy_sources(source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("gnomon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in [
        "web/templates/base.html",
        "web/templates/runs/detail.html",
        "web/templates/partials/run_live.html",
        "web/templates/schedules/list.html",
        "web/static/vendor/htmx-2.0.11/LICENSE",
        "web/static/vendor/dagre-3.1.3/LICENSE",
        "web/static/gnomon.css",
        "scheduler/examples/nightly_etl.py",  # gnomon up --examples from the Docker image
        "web/openapi.yaml",
    ]:
        assert shipped in names, f"{shipped} is not in the wheel"

    # When it is installed, non-editable, into a fresh virtualenv
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    packages = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(packages) / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()))

    # Then, run from outside the checkout, it serves pages from the installed files
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["GNOMON_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [str(python), "-c", SERVE, str(tmp_path / "g.db"), str(tmp_path / "blobs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["web"].startswith(str(venv))
    pages = found["pages"]
    assert all(status == 200 for status, _ in pages.values()), pages
    assert "API token" in pages["/login"][1]
    assert "<h1>Runs</h1>" in pages["/"][1]
    assert "<h1>Schedules</h1>" in pages["/schedules"][1]
    assert "htmx" in pages["/static/vendor/htmx-2.0.11/htmx.min.js"][1]
    assert pages["/api/v1/openapi.yaml"][1].startswith("# The REST API")
