"""The compose file's structure: what Docker would run, checked without Docker."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_the_cluster():
    assert set(compose()["services"]) == {"postgres", "ray-head", "ray-worker", "gnomon"}


def test_every_command_is_a_script_in_the_repository():
    for name, service in compose()["services"].items():
        if name == "postgres":
            continue
        [script] = service["command"]
        path = ROOT / script.lstrip("/")
        assert path.is_file(), f"{name} runs {script}, which is not in the repository"
        assert os.access(path, os.X_OK), f"{script} is not executable"


def test_dashboard_is_published_on_8080_with_postgres_and_the_cluster():
    gnomon = compose()["services"]["gnomon"]
    assert gnomon["ports"] == ["8080:8080"]
    assert gnomon["environment"]["GNOMON_DATABASE_URL"].startswith("postgresql://")
    assert gnomon["environment"]["RAY_ADDRESS"] == "ray-head:6380"
    assert gnomon["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_healthchecks_and_shared_blob_store():
    services = compose()["services"]
    for name in ("postgres", "ray-head", "gnomon"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert "/healthz" in " ".join(services["gnomon"]["healthcheck"]["test"])
    for name in ("ray-head", "ray-worker", "gnomon"):
        assert "blobs:/data/blobs" in services[name]["volumes"]
    assert set(compose()["volumes"]) == {"pgdata", "blobs"}


def test_workers_scale_without_fixed_names_or_ports():
    worker = compose()["services"]["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_wheel_not_the_checkout():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip wheel" in dockerfile and "pip install --no-cache-dir /wheels/*.whl" in dockerfile
    assert "COPY templates templates" in dockerfile
