"""From a Ray DAG to a ``Graph``: the stored, replayable form of a workflow.

A ``Graph`` holds each task's function (pickled once, by value for user code), its
argument template with ``Upstream`` markers where other tasks' outputs go, and its
options. Task ids follow Ray Workflows' scheme, so a Ray user's ids work unchanged: the
explicit ``task_id``, else the function's ``module.qualname`` (slugified), then
``_1``, ``_2``, ... for each further task of the same base in the workflow, the tasks
of continuations included. A graph's ids never change once stored, so a resume finds
the same ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
import sys
import sysconfig
import unicodedata
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray import cloudpickle
from ray.dag import DAGNode, FunctionNode, InputAttributeNode, InputNode
from ray.dag.input_node import DAGInputData

from executor.errors import InvalidTypeError
from executor.options import TaskOptions, split_options
from executor.store.records import ReserveIds


@dataclass(frozen=True)
class Upstream:
    """Where another task's output goes in an argument template."""

    task_id: str


@dataclass
class TaskSpec:
    task_id: str
    name: str
    function_key: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ray_options: dict[str, Any]
    options: TaskOptions
    upstream: list[str]
    #: "function", or a built-in kind such as "sleep" or "event" (see ``executor.events``).
    kind: str = "function"
    #: Upstream tasks whose outputs go inside a container argument (a list, a dict):
    #: the task gets their ObjectRefs there, as in Ray, resolving to their final values.
    nested: tuple[str, ...] = ()
    #: The Ray options the task was bound with, as given (``get_metadata`` shows them).
    bound_options: dict[str, Any] | None = None


@dataclass
class Graph:
    tasks: dict[str, TaskSpec]
    output: str
    #: function key -> cloudpickled function; each function is pickled once.
    functions: dict[str, bytes] = field(default_factory=dict)
    #: Workflow options every task takes unless it gives its own (``split_options``).
    defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def pools(self) -> set[str]:
        """The pools its tasks run in."""
        return {spec.options.pool for spec in self.tasks.values() if spec.options.pool}


#: The kind of the task ``catching`` adds.
CATCH = "catch"


def catching(graph: Graph, task_id: str) -> Graph:
    """``graph`` with one more task ``task_id`` as its output: the old output's value as
    ``(value, None)``, or ``(None, error)`` if anything that value waited on raised.

    A task with ``catch_exceptions`` that returns a continuation gets its continuation
    this way: the errors of every task inside it are caught at that task, as in Ray.
    The catch runs in the manager (it only waits), with the output's ref in a list so
    that Ray hands it over unresolved, error or not.
    """
    spec = TaskSpec(
        task_id=task_id,
        name="workflow.catch_exceptions",
        function_key="",
        args=([Upstream(graph.output)],),
        kwargs={},
        ray_options={},
        options=TaskOptions(),
        upstream=[graph.output],
        kind=CATCH,
        nested=(graph.output,),
    )
    return Graph(
        tasks={**graph.tasks, task_id: spec},
        output=task_id,
        functions=graph.functions,
        defaults=graph.defaults,
    )


_STDLIB = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
_SITE = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
_pickled: weakref.WeakKeyDictionary[Callable[..., Any], tuple[str, bytes]] = (
    weakref.WeakKeyDictionary()
)


def _is_user_module(module_name: str) -> bool:
    """User code (a script, a dags folder, a test) is stored by value so a fresh process
    or a node that never saw the file can run it; installed libraries go by reference."""
    if module_name == "__main__" or module_name.split(".")[0] in ("executor", "scheduler", "web"):
        return module_name == "__main__"
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return not any(path.startswith(root) for root in _STDLIB | _SITE)


def register_user_module(module_name: str) -> None:
    """Store a user module's code by value wherever its objects are pickled."""
    if module_name != "__main__" and _is_user_module(module_name):
        cloudpickle.register_pickle_by_value(sys.modules[module_name])


def pickle_function(func: Callable[..., Any]) -> tuple[str, bytes]:
    try:
        return _pickled[func]
    except (KeyError, TypeError):
        pass
    register_user_module(getattr(func, "__module__", None) or "__main__")
    data = cloudpickle.dumps(func)
    entry = (hashlib.sha1(data).hexdigest()[:20], data)
    with contextlib.suppress(TypeError):
        _pickled[func] = entry
    return entry


def function_name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '__main__')}.{getattr(func, '__qualname__', repr(func))}"


def slugify(value: str) -> str:
    """Ray Workflows' rendering of a qualified name in a task id (after Django's
    ``slugify``): ASCII only, nothing but word characters, dots and dashes, so
    ``f.<locals>.g`` becomes ``f.locals.g``."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w.\-]", "", value).strip()
    return re.sub(r"[-\s]+", "-", value)


def id_base(func: Callable[..., Any]) -> str:
    """The base of a task's default id: its function's module and slugified qualname."""
    module = getattr(func, "__module__", None) or "__anonymous_module__"
    return f"{module}.{slugify(getattr(func, '__qualname__', None) or '__anonymous_func__')}"


class _Namer:
    """Ray Workflows' task ids: a base (an explicit ``task_id``, else ``id_base``), then
    ``<base>_1``, ``<base>_2``, ... for each further task of that base in the workflow.
    ``first`` holds the first index of each base this graph may use (0 if absent)."""

    def __init__(self, first: dict[str, int]) -> None:
        self.next = dict(first)
        self.taken: set[str] = set()

    def name(self, base: str) -> str:
        while True:
            index = self.next.get(base, 0)
            self.next[base] = index + 1
            task_id = base if index == 0 else f"{base}_{index}"
            # An explicit id may already be some base's numbered one ("f_1"): skip it.
            if task_id not in self.taken:
                self.taken.add(task_id)
                return task_id


def _children(value: Any) -> list[DAGNode]:
    found: list[DAGNode] = []

    def walk(item: Any) -> None:
        if isinstance(item, DAGNode):
            found.append(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            for x in item:
                walk(x)
        elif isinstance(item, dict):
            for x in item.values():
                walk(x)

    walk(value)
    return found


def _substitute(value: Any, replace: Callable[[DAGNode], Any]) -> Any:
    if isinstance(value, DAGNode):
        return replace(value)
    if isinstance(value, list):
        return [_substitute(x, replace) for x in value]
    if isinstance(value, tuple):
        return tuple(_substitute(x, replace) for x in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(_substitute(x, replace) for x in value)
    if isinstance(value, dict):
        return {k: _substitute(x, replace) for k, x in value.items()}
    return value


def _input_value(node: DAGNode, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Ray's own rules: one positional input is itself, otherwise a DAGInputData."""
    value = args[0] if len(args) == 1 and not kwargs else DAGInputData(*args, **kwargs)
    if isinstance(node, InputNode):
        return value
    key = node._key
    if isinstance(value, DAGInputData) or isinstance(key, int):
        return value[key]
    if node._accessor_method == "__getattr__":
        return getattr(value, key)
    return value[key]


def build_graph(
    dag: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    reserve: ReserveIds | None = None,
    defaults: tuple[tuple[str, Any], ...] = (),
) -> Graph:
    """Turn a DAG whose output is a ``FunctionNode`` into a ``Graph``.

    Task ids are numbered per base from 0 in a new workflow; a continuation's graph is
    numbered on from the ids its workflow has used, which ``reserve`` hands out.
    ``defaults`` are workflow options each task takes unless it gives its own.
    Raises ``InvalidTypeError`` for a DAG that is not one of remote functions, and for
    arguments that do not fit a function's signature, before anything is stored.
    """
    if not isinstance(dag, FunctionNode):
        what = type(dag).__name__
        if isinstance(dag, DAGNode):
            raise InvalidTypeError(
                f"Currently workflow does not support classes as DAG inputs (got {what})"
            )
        raise InvalidTypeError(
            f"Input should be a DAG (a remote function's .bind(...)), got {what}"
        )
    kwargs = kwargs or {}
    order = _post_order(dag)
    bases = [_base(node) for node in order]
    first: dict[str, int] = {}
    if reserve is not None:
        first = reserve(dict(Counter(bases)))
    namer = _Namer(first)
    graph_tasks: dict[str, TaskSpec] = {}
    functions: dict[str, bytes] = {}
    ids: dict[int, str] = {}
    for node, base in zip(order, bases, strict=True):
        spec = _task_spec(node, namer.name(base), ids, functions, args, kwargs, dict(defaults))
        ids[id(node)] = spec.task_id
        graph_tasks[spec.task_id] = spec
    return Graph(
        tasks=graph_tasks, output=ids[id(dag)], functions=functions, defaults=tuple(defaults)
    )


def _post_order(dag: FunctionNode) -> list[FunctionNode]:
    """The DAG's function nodes, each once, every node after its arguments' nodes in
    argument order (Ray's ``apply_recursive``), without recursion: a chain of thousands
    of tasks converts too."""
    order: list[FunctionNode] = []
    seen: set[int] = set()
    stack: list[tuple[DAGNode, bool]] = [(dag, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen or isinstance(node, (InputNode, InputAttributeNode)):
            continue
        if not isinstance(node, FunctionNode):
            raise InvalidTypeError(
                f"Unsupported DAG node {type(node).__name__}: workflows take remote functions"
            )
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        children = _children((node._bound_args, node._bound_kwargs))
        stack.extend((c, False) for c in reversed(children) if id(c) not in seen)
    return order


def _base(node: FunctionNode) -> str:
    explicit = split_options(node._bound_options)[0].task_id
    if explicit is not None:
        return str(explicit)
    func = node._body
    return getattr(func, "__gnomon_name__", None) or id_base(func)


def _task_spec(
    node: FunctionNode,
    task_id: str,
    ids: dict[int, str],
    functions: dict[str, bytes],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    defaults: dict[str, Any],
) -> TaskSpec:
    func = node._body
    kind = getattr(func, "__gnomon_kind__", "function")
    # Defaults are for the workflow's own functions, not for waits.
    task_options, ray_options = split_options(
        node._bound_options, defaults if kind == "function" else None
    )
    name = getattr(func, "__gnomon_name__", None) or function_name(func)
    if kind == "function":
        _check_signature(func, name, node._bound_args, node._bound_kwargs)
    upstream: list[str] = []

    def replace(child: DAGNode) -> Any:
        if isinstance(child, (InputNode, InputAttributeNode)):
            return _input_value(child, args, kwargs)
        upstream_id = ids[id(child)]
        if upstream_id not in upstream:
            upstream.append(upstream_id)
        return Upstream(upstream_id)

    bound_args = _substitute(tuple(node._bound_args), replace)
    bound_kwargs = _substitute(dict(node._bound_kwargs), replace)
    key, data = pickle_function(func)
    functions[key] = data
    return TaskSpec(
        task_id=task_id,
        name=name,
        function_key=key,
        args=bound_args,
        kwargs=bound_kwargs,
        ray_options=ray_options,
        options=task_options,
        upstream=upstream,
        kind=kind,
        nested=_nested(bound_args, bound_kwargs),
        bound_options=dict(node._bound_options),
    )


_signatures: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature | None] = (
    weakref.WeakKeyDictionary()
)


def _check_signature(
    func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Arguments that do not fit the function raise TypeError now, as Ray Workflows
    checked them, instead of a failed task later."""
    try:
        signature = _signatures[func]
    except KeyError:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):  # a builtin or a callable without one
            signature = None
        with contextlib.suppress(TypeError):
            _signatures[func] = signature
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise InvalidTypeError(f"Arguments of {name} do not fit it: {error}") from None


def _nested(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
    """The upstream tasks found inside container arguments, in order, once each."""
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Upstream):
            found[value.task_id] = None
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    for value in (*args, *kwargs.values()):
        if not isinstance(value, Upstream):
            walk(value)
    return tuple(found)
