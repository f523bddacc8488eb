"""``deploy/kubernetes/``, checked without a Kubernetes cluster.

Both ways to apply it (with the trial PostgreSQL, and ``external-postgres/``) are built
with ``kubectl kustomize`` from a copy holding the secrets files the README has the user
write. Every built-in object is checked against Kubernetes' own schemas
(``kubernetes-validate``, strict: an unknown field fails), the ``RayCluster`` against
KubeRay's fields (``kuberay/raycluster-v1.schema.json``) with each pod template as a
Kubernetes ``PodTemplate``; then what must hold across objects: the token reaches every
Ray container and gnomon, gnomon finds the head's service, and every reference resolves.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RAYCLUSTER_SCHEMA = Path(__file__).with_name("kuberay") / "raycluster-v1.schema.json"
#: KubeRay's head service is named after the RayCluster; the GCS listens on 6379 there.
HEAD_SERVICE = "{name}-head-svc:6379"
SECRETS = "api-token=the-api-token\nray-token=the-ray-token\n"
EXTERNAL_URL = "postgresql://app:secret@db.example.com:5432/gnomon"


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is part of this machine's image (.ci/setup-system.sh checks it)"
    return subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )


def build(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    target = copy / overlay
    (target / "secrets.env").write_text(SECRETS)
    (target / "database.env").write_text(f"database-url={EXTERNAL_URL}\n")
    built = kustomize(target)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(params=[".", "external-postgres"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> list[dict[str, Any]]:
    return build(tmp_path, request.param)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [o for o in by_kind(objects, kind) if name in (None, o["metadata"]["name"])]
    return found


def ray_templates(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def pod_templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found + [t for c in by_kind(objects, "RayCluster") for t in ray_templates(c)]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_builds_without_secrets_files_fail(tmp_path: Path):
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    for overlay in (copy, copy / "external-postgres"):
        failed = kustomize(overlay)
        assert failed.returncode != 0, failed.stderr
        assert "secrets.env" in failed.stderr, failed.stderr


def test_every_builtin_object_is_valid_kubernetes(objects):
    version = kubernetes_validate.latest_version()
    for found in objects:
        if found["kind"] == "RayCluster":
            continue
        kubernetes_validate.validate(found, version, strict=True)


def test_the_raycluster_has_kuberays_fields_and_valid_pod_templates(objects):
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    cluster = one(objects, "RayCluster")
    jsonschema.validate(cluster, schema)
    version = kubernetes_validate.latest_version()
    for template in ray_templates(cluster):
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
        kubernetes_validate.validate({**wrapped, "template": template}, version, strict=True)
    [workers] = cluster["spec"]["workerGroupSpecs"]
    assert 1 <= workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_the_token_reaches_every_ray_container_the_autoscaler_and_gnomon(objects):
    cluster = one(objects, "RayCluster")
    token = {"secretKeyRef": {"name": "gnomon-secrets", "key": "ray-token"}}
    gnomon = one(objects, "Deployment", "gnomon")["spec"]["template"]["spec"]["containers"]
    containers = [c for t in ray_templates(cluster) for c in t["spec"]["containers"]] + gnomon
    for container in containers:
        assert env_of(container)["RAY_AUTH_TOKEN"] == token, container["name"]
    for container in containers[:-1]:
        assert env_of(container)["RAY_AUTH_MODE"] == "token", container["name"]
    assert env_of(cluster["spec"]["autoscalerOptions"])["RAY_AUTH_TOKEN"] == token
    secret = one(objects, "Secret", "gnomon-secrets")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"api-token": "the-api-token", "ray-token": "the-ray-token"}


def test_gnomon_joins_the_head_service_and_is_ready_on_healthz(objects):
    cluster = one(objects, "RayCluster")
    deployment = one(objects, "Deployment", "gnomon")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    environment = env_of(container)
    assert environment["RAY_ADDRESS"] == HEAD_SERVICE.format(name=cluster["metadata"]["name"])
    assert container["command"] == ["/deploy/gnomon.sh"]
    assert (ROOT / "deploy" / "gnomon.sh").is_file()
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert environment["GNOMON_API_TOKEN"] == {
        "secretKeyRef": {"name": "gnomon-secrets", "key": "api-token"}
    }
    service = one(objects, "Service", "gnomon")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    images = {c["image"] for t in pod_templates(objects) for c in t["spec"]["containers"]}
    assert images - {"postgres:16"} == {"gnomon:latest"}, "one image for every Gnomon pod"


def test_every_reference_resolves(objects):
    names = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for template in pod_templates(objects):
        spec = template["spec"]
        for container in spec["containers"]:
            for value in env_of(container).values():
                if not isinstance(value, dict):
                    continue
                for kind, ref in (
                    ("Secret", value.get("secretKeyRef")),
                    ("ConfigMap", value.get("configMapKeyRef")),
                ):
                    if ref:
                        target = names.get((kind, ref["name"]))
                        assert target, f"no {kind} {ref['name']}"
                        assert ref["key"] in target["data"], f"no key {ref['key']} in {ref['name']}"
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim:
                assert ("PersistentVolumeClaim", claim["claimName"]) in names


def test_the_trial_has_postgres_and_the_external_overlay_has_not(tmp_path: Path):
    trial = build(tmp_path / "trial", ".")
    external = build(tmp_path / "external", "external-postgres")
    url = one(trial, "Secret", "gnomon-database")["data"]["database-url"]
    host = base64.b64decode(url).decode().split("@")[1].split(":")[0]
    assert host == one(trial, "Service", "postgres")["metadata"]["name"]
    assert one(trial, "StatefulSet", "postgres")
    assert not by_kind(external, "StatefulSet")
    assert ("Service", "postgres") not in {(o["kind"], o["metadata"]["name"]) for o in external}
    external_url = one(external, "Secret", "gnomon-database")["data"]["database-url"]
    assert base64.b64decode(external_url).decode() == EXTERNAL_URL
