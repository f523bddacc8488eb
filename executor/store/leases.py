"""Who runs a workflow: owner ids, and whether an owner is still alive.

Ownership is a lease (an owner id and an expiry) taken with a compare-and-set in the
store. An owner id names its host and process, so a dead owner on the same host is
seen at once; on another host only the lease's expiry can tell.
"""

from __future__ import annotations

import os
import socket

#: How long a lease lasts without a heartbeat before another process may take the workflow.
LEASE_TTL = float(os.environ.get("GNOMON_LEASE_TTL", "30"))


def _host() -> str:
    """This host as owner ids name it: the hostname, and the PID namespace where there is
    one. Containers may share a hostname (``network_mode: host``) but not their
    processes; a pid seen from another namespace says nothing about liveness."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}~{namespace}"


HOSTNAME = _host()


def owner_id(nonce: str) -> str:
    """``<host>/<pid>/<nonce>``: the nonce tells apart owners in one process."""
    return f"{HOSTNAME}/{os.getpid()}/{nonce}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner is a process of this host that has exited."""
    host, _, rest = owner.partition("/")
    pid_text, _, _ = rest.partition("/")
    if host != HOSTNAME or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie still answers kill(0); it is dead all the same
        with open(f"/proc/{pid_text}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def lease_lost(owner: str, lease_expires_at: float | None, now: float) -> bool:
    """Whether ``owner``'s lease no longer protects its workflow: expired, or its
    process is gone."""
    return (lease_expires_at or 0) < now or owner_is_dead(owner)
