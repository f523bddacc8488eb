"""How a Gnomon process joins a Ray cluster, or starts a local one.

Every entry point goes through ``connect``: ``gnomon up`` and the other commands, and
``workflow.init``. It decides four things the same way everywhere:

- **Which Ray.** The address given, else ``$RAY_ADDRESS``, else a new local Ray
  (``address="local"``). Never Ray's own fallback, the last cluster ``ray start`` recorded
  in ``$TMPDIR/ray/ray_current_cluster``: that cluster may be long dead, and joining it
  retries forever.
- **The cluster's token.** ``ray start`` turns on token authentication, and a process on
  another host has no ``~/.ray/auth_token``. The token comes from ``RAY_AUTH_TOKEN`` or
  from the file ``RAY_AUTH_TOKEN_PATH`` names, and either turns on ``RAY_AUTH_MODE=token``
  here. ``RAY_AUTH_MODE=disabled``, set on purpose, is respected.
- **A bounded first contact.** Before ``ray.init`` joins, the cluster's GCS must answer
  within ``CONNECT_TIMEOUT`` seconds and accept the token. Anything else is a
  ``RayConnectError`` whose one line names the address and what to check, never a hang.
- **A node on this host.** A Ray driver attaches to a raylet on its own host; on a host
  that runs none of the cluster's nodes, ``ray.init`` waits a minute and fails. A
  long-lived service (``gnomon up``) asks for ``start_node=True`` and gets a node with no
  CPUs (tasks still run on the workers) that lives and dies with it. Anything else gets a
  ``RayConnectError`` that says so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import ray

from executor.errors import WorkflowError

#: What ``ray.init`` takes for "start a new local Ray, whatever else is running".
LOCAL = "local"

#: Seconds the first contact with a cluster may take before the address is reported.
CONNECT_TIMEOUT = 10.0

#: Seconds a node started for this process may take to join its cluster.
NODE_START_TIMEOUT = 90.0


class RayConnectError(WorkflowError):
    """The Ray cluster at ``address`` cannot be joined from here; the message says why."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address


def resolve_address(address: str | None = None) -> str:
    """The cluster to join: ``address``, else ``$RAY_ADDRESS``, else ``"local"``."""
    return address or os.environ.get("RAY_ADDRESS") or LOCAL


def connect(
    address: str | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT,
    start_node: bool = False,
    **options: Any,
) -> str:
    """Join the cluster at ``address`` (see ``resolve_address``) or start a local Ray.

    ``start_node``: on a host with no node of the cluster, start one for this process
    instead of failing. ``options`` go to ``ray.init``. Returns the GCS address of the Ray
    joined or started. Raises ``RayConnectError`` when a cluster cannot be joined.
    """
    target = resolve_address(address)
    if target == LOCAL:
        try:
            ray.init(address=LOCAL, **options)
        except (OSError, RuntimeError) as error:
            raise RayConnectError(
                LOCAL, f"Cannot start a local Ray: {_first_line(error)}"
            ) from None
        return ray.get_runtime_context().gcs_address
    if target.startswith("ray://"):
        ray.init(address=target, **options)
        return ray.get_runtime_context().gcs_address
    if target == "auto":
        target = _recorded_address()
    use_token_from_environment(target)
    if not live_nodes(target, timeout) & local_node_ids():
        if not start_node:
            raise RayConnectError(
                target,
                f"Ray at {target} answers, but none of its nodes runs on this host, and a "
                "Ray driver needs one: run this on a node of the cluster, or start one "
                f"here first (ray start --address={target} --num-cpus=0)",
            )
        _start_node(target)
    try:
        ray.init(address=target, **options)
    except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
        raise RayConnectError(
            target, f"Cannot join Ray at {target}: {_first_line(error)}"
        ) from None
    return ray.get_runtime_context().gcs_address


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def use_token_from_environment(address: str) -> bool:
    """Turn on ``RAY_AUTH_MODE=token`` in this process when a token is at hand.

    A token at hand is ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or the
    one Ray generated on this host (``~/.ray/auth_token``): the rule ``ray start --head``
    itself follows. An explicit ``RAY_AUTH_MODE`` always wins. Returns whether token
    auth is on.
    """
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and not os.environ.get("RAY_AUTH_TOKEN"):
        # Ray aborts the whole process on an unreadable token file: say so first.
        try:
            readable = bool(Path(path).read_text().strip())
        except OSError as error:
            raise RayConnectError(
                address, f"RAY_AUTH_TOKEN_PATH names {path}, which cannot be read: {error.strerror}"
            ) from None
        if not readable:
            raise RayConnectError(address, f"RAY_AUTH_TOKEN_PATH names {path}, which is empty")
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    generated = Path.home() / ".ray" / "auth_token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or path or generated.is_file()):
        return False
    raylet: Any = ray._raylet
    os.environ["RAY_AUTH_MODE"] = "token"
    # Ray reads its config (the auth mode included) once per process: read it again, and
    # forget any token looked up before the mode was on.
    raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()
    return True


def live_nodes(address: str, timeout: float = CONNECT_TIMEOUT) -> set[str]:
    """The ids of the live nodes of the cluster at ``address``, asked of its GCS within
    ``timeout`` seconds with this process's token. Raises ``RayConnectError`` when it does
    not answer in time or refuses the token."""
    # Ray's own channel factory: it adds the token (and TLS when RAY_USE_TLS is set).
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import gcs_pb2, gcs_service_pb2, gcs_service_pb2_grpc

    requests: Any = gcs_service_pb2
    states: Any = gcs_pb2.GcsNodeInfo.GcsNodeState  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    channel = init_grpc_channel(address)
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(
            requests.GetClusterIdRequest(), timeout=max(0.1, deadline - time.monotonic())
        )
        reply = stub.GetAllNodeInfo(
            requests.GetAllNodeInfoRequest(), timeout=max(0.1, deadline - time.monotonic())
        )
    except grpc.RpcError as error:
        raise RayConnectError(address, _refusal(address, error, timeout)) from None
    finally:
        channel.close()
    return {node.node_id.hex() for node in reply.node_info_list if node.state == states.ALIVE}


def local_node_ids() -> set[str]:
    """The ids of the Ray nodes whose raylet runs on this host (any cluster's)."""
    from ray._private.services import find_node_ids

    return set(find_node_ids())


def _refusal(address: str, error: grpc.RpcError, timeout: float) -> str:
    """The one line for a failed first contact."""
    code = error.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        if mode.lower() != "token":
            return (
                f"Ray at {address} requires a token, and RAY_AUTH_MODE is {mode} here: set "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
            )
        return (
            f"Ray at {address} refused this host's token: set RAY_AUTH_TOKEN (or "
            "RAY_AUTH_TOKEN_PATH) to the token the head node was started with"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"Ray at {address} did not answer within {timeout:g} s: check the address "
            "(--ray-address, RAY_ADDRESS), that the head node is up, and that this host "
            "reaches its port"
        )
    detail = (error.details() or "").rsplit(": ", 1)[-1] or code.name
    return (
        f"Cannot reach Ray at {address} ({detail}): check the address (--ray-address, "
        "RAY_ADDRESS), that the head node is up, and that this host reaches its port"
    )


def _start_node(address: str) -> None:
    """Start a node of the cluster at ``address`` on this host, with no CPUs, for this
    process to attach to. It stops when this process exits, and dies when it is killed."""
    # Open for the node's whole life, past this function: no context manager.
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="gnomon-ray-node-", suffix=".log", delete=False
    )
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        f"--address={address}",
        "--num-cpus=0",
        "--disable-usage-stats",
        "--block",
    ]
    # The node gets SIGKILL when this process dies, even of SIGKILL; `ray start --block`'s
    # reaper then takes the raylet and the rest of the node down with it.
    setpriv = shutil.which("setpriv")
    if setpriv:
        command = [setpriv, "--pdeathsig", "KILL", *command]
    # A session of its own: a terminal's Ctrl-C is this process's to handle, not the node's.
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    atexit.register(_stop_node, node)
    deadline = time.monotonic() + NODE_START_TIMEOUT
    while not live_nodes(address) & local_node_ids():
        if node.poll() is not None:
            raise RayConnectError(
                address,
                f"The Ray node started on this host to join {address} exited with "
                f"{node.returncode}: see {log.name}",
            )
        if time.monotonic() > deadline:
            _stop_node(node)
            raise RayConnectError(
                address,
                f"The Ray node started on this host did not join {address} within "
                f"{NODE_START_TIMEOUT:g} s: see {log.name}",
            )
        time.sleep(0.5)


def _stop_node(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(timeout=5)
        except subprocess.TimeoutExpired:
            node.kill()


def _recorded_address() -> str:
    """``"auto"``: the cluster ``ray start`` last recorded on this host, if any."""
    from ray._private.utils import read_ray_address

    found = read_ray_address()
    if not found:
        raise RayConnectError("auto", "RAY_ADDRESS is 'auto', and no Ray was started on this host")
    return found
