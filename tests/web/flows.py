"""Remote functions the web tests run as real workflows."""

from __future__ import annotations

import logging
import os
import sys

import ray

from tests.waiting import eventually


@ray.remote
def source(value: str) -> str:
    return value


@ray.remote
def show(value: object) -> str:
    return str(value)


@ray.remote
def shout(text: str) -> str:
    return text.upper() if text.isalpha() else text


@ray.remote(max_retries=0)
def needs_file(path: str, value: str) -> str:
    """Fails until ``path`` exists: the cause an operator fixes before Resume."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing")
    return value


@ray.remote
def waits_for_file(path: str, timeout: float = 60.0) -> str:
    """Runs until ``path`` exists, so a test can watch the run while it is RUNNING."""
    eventually(lambda: os.path.exists(path), timeout=timeout, what=path)
    return "released"


@ray.remote
def chatty(lines: int) -> int:
    for i in range(lines):
        print(f"line {i} to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("chatty").warning("a logging record")
    return lines


@ray.remote
def join(*parts: str) -> str:
    return "+".join(parts)


@ray.remote
def expand(count: int) -> str:
    from executor import workflow

    return workflow.continuation(join.bind(*[source.bind(f"c{i}") for i in range(count)]))
