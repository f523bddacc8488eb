"""The compose file, checked as far as a machine with no Docker engine allows.

- It is valid against the Compose Specification's schema (``check-jsonschema``'s vendored
  copy, from PyPI).
- Interpolated as ``docker compose`` interpolates it with the README's ``.env``, every
  service that joins Ray gets the cluster's token and the head's address, and a missing
  dashboard token stops ``docker compose`` with a message.
- It agrees with ``deploy/`` and the Dockerfile: each command is a script there, each
  script's variable is set or optional and listed in the README, one image serves every
  node, and the blob volume sits where ``GNOMON_STORAGE`` says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
#: The services that join the Ray cluster, and the variable each reads the head from.
RAY_SERVICES = {"ray-head": None, "ray-worker": "RAY_HEAD_ADDRESS", "gnomon": "RAY_ADDRESS"}

#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``, ``${NAME?error}``
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?)([-?])((?:[^}])*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """The Compose Specification's interpolation of ``value`` (recursively) from ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, colon, kind, word = match.groups()
        found = env.get(name)
        unset = found is None or (colon == ":" and found == "")
        if kind == "-" and unset:
            return word
        if kind == "?" and unset:
            raise MissingVariable(word)
        return found or ""

    return INTERPOLATION.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def dotenv(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )


def readme_env_file() -> str:
    """The ``.env`` the README's Docker Compose section writes, run as the user would."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Docker Compose", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.S)
    assert script, "the README's Docker Compose section has no shell block"
    commands = [line for line in script.group(1).splitlines() if "docker" not in line]
    return "\n".join(commands)


def compose(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The ``.env`` written by the README's commands, in a scratch project folder."""
    folder = tmp_path_factory.mktemp("project")
    made = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_env_file()],
        cwd=folder,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    written = folder / ".env"
    assert written.stat().st_mode & 0o077 == 0, "the .env holds secrets: mode 0600"
    return dotenv(written.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification():
    checked = subprocess.run(
        [
            str(Path(sys.executable).with_name("check-jsonschema")),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_readme_env_file_holds_both_tokens(env):
    assert len(env["RAY_AUTH_TOKEN"]) >= 32
    assert len(env["GNOMON_API_TOKEN"]) >= 32
    assert env["RAY_AUTH_TOKEN"] != env["GNOMON_API_TOKEN"]


def test_every_ray_service_gets_the_token_and_the_heads_address(env):
    services = compose(env)["services"]
    port = services["ray-head"]["environment"]["RAY_PORT"]
    for name, variable in RAY_SERVICES.items():
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_TOKEN"] == env["RAY_AUTH_TOKEN"], name
        assert environment["RAY_AUTH_MODE"] == "token", name
        if variable:
            assert environment[variable] == f"ray-head:{port}", name
            assert services[name]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert services["gnomon"]["environment"]["GNOMON_API_TOKEN"] == env["GNOMON_API_TOKEN"]
    assert f"--address=ray-head:{port}" in services["ray-head"]["healthcheck"]["test"]


def test_auth_is_disabled_everywhere_or_nowhere(env):
    services = compose({**env, "RAY_AUTH_MODE": "disabled"})["services"]
    assert {services[name]["environment"]["RAY_AUTH_MODE"] for name in RAY_SERVICES} == {"disabled"}


def test_a_missing_dashboard_token_stops_compose_with_a_message(env):
    with pytest.raises(MissingVariable, match="set GNOMON_API_TOKEN"):
        compose({k: v for k, v in env.items() if k != "GNOMON_API_TOKEN"})


def test_commands_are_the_deploy_scripts_and_their_variables_are_documented(env):
    services = compose(env)["services"]
    readme = (ROOT / "README.md").read_text()
    for name in RAY_SERVICES:
        [command] = services[name]["command"]
        script = ROOT / command.lstrip("/")
        assert script.parent == ROOT / "deploy", command
        assert os.access(script, os.X_OK), command
        source = script.read_text() + (ROOT / "deploy" / "ray-auth.sh").read_text()
        for variable in set(re.findall(r"\$\{(\w+)", source)):
            assert f"`{variable}`" in readme, f"{command} reads {variable}; the README omits it"
            optional = re.search(rf"\$\{{{variable}(:-|:\+)", source)
            assert optional or variable in services[name]["environment"], (name, variable)


def test_one_image_from_the_dockerfile_serves_every_node(env):
    services = compose(env)["services"]
    assert services["ray-head"]["build"] == "."
    assert {services[name]["image"] for name in RAY_SERVICES} == {"gnomon:latest"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy /deploy" in dockerfile
    assert "pip wheel" in dockerfile
    assert "pip install --no-cache-dir /wheels/*.whl" in dockerfile


def test_the_blob_volume_is_where_storage_points_and_postgres_matches(env):
    spec = compose(env)
    services = spec["services"]
    for name in RAY_SERVICES:
        storage = services[name]["environment"]["GNOMON_STORAGE"]
        assert f"blobs:{storage}" in services[name]["volumes"], name
    assert set(spec["volumes"]) == {"pgdata", "blobs"}
    postgres = services["postgres"]["environment"]
    user, password, db = (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    url = services["gnomon"]["environment"]["GNOMON_DATABASE_URL"]
    assert url == f"postgresql://{user}:{password}@postgres:5432/{db}"
    assert services["gnomon"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_workers_scale_without_fixed_names_or_ports_and_gnomon_is_published(env):
    services = compose(env)["services"]
    worker = services["ray-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert services["gnomon"]["ports"] == ["8080:8080"]
    assert "/healthz" in " ".join(services["gnomon"]["healthcheck"]["test"])
