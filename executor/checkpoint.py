"""Serializing task outputs into checkpoints, and reading them back.

ObjectRefs inside an output are checkpointed by value when the output is first
returned (Ray Workflows' contract); reading the checkpoint puts them back into the
object store as fresh ObjectRefs. Outputs over ``BLOB_THRESHOLD`` go to the blob
store and the database keeps only their URL.
"""

from __future__ import annotations

import io
import os
import pickle
import reprlib
import uuid
from typing import Any
from urllib.parse import quote

import fsspec
import ray
from ray import cloudpickle

from executor.errors import CheckpointError
from executor.store.records import Checkpoint

#: Checkpoints larger than this are written to the blob store instead of a row.
BLOB_THRESHOLD = 1 << 20
#: Output previews are bounded so the dashboard never loads a large value.
PREVIEW_CHARS = 2000

_repr = reprlib.Repr()
_repr.maxstring = 400
_repr.maxother = 400
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 50
_repr.maxlevel = 4


def _restore_ref(value: Any) -> ray.ObjectRef:
    return ray.put(value)


class _CheckpointPickler(cloudpickle.Pickler):
    """cloudpickle, except that an ObjectRef is stored as the value it points to."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, ray.ObjectRef):
            return _restore_ref, (ray.get(obj),)
        return super().reducer_override(obj)


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _CheckpointPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def preview(value: Any) -> str:
    """A bounded text preview, computed where the value lives (never in the web process)."""
    try:
        text = _repr.repr(value)
    except Exception as error:  # a user's __repr__ may raise; the preview is best effort
        text = f"<{type(value).__name__}: repr failed: {error}>"
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class BlobStore:
    """Large checkpoints as files under a directory or any fsspec URL."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def put(self, workflow_id: str, name: str, data: bytes) -> str:
        url = f"{self.root}/{quote(workflow_id, safe='')}/{quote(name, safe='')}-{uuid.uuid4().hex}"
        try:
            fs, path = fsspec.core.url_to_fs(url)
            fs.makedirs(
                os.path.dirname(path) if "://" not in url else path.rsplit("/", 1)[0], exist_ok=True
            )
            with fs.open(path, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise CheckpointError(f"Blob store {self.root} is not writable: {error}") from None
        return url

    def get(self, url: str) -> bytes:
        with fsspec.open(url, "rb") as handle:
            return handle.read()

    def delete_workflow(self, workflow_id: str) -> None:
        url = f"{self.root}/{quote(workflow_id, safe='')}"
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def make_checkpoint(
    value: Any, kind: str, blobs: BlobStore, workflow_id: str, task_id: str
) -> Checkpoint:
    """Serialize once; the bytes go to the row or, when large, to the blob store."""
    try:
        data = dumps(value)
    except Exception as error:
        raise CheckpointError(
            f"Output of task {task_id!r} cannot be pickled: {type(error).__name__}: {error}"
        ) from None
    if len(data) > BLOB_THRESHOLD:
        return Checkpoint(
            kind=kind, data=None, blob=blobs.put(workflow_id, task_id, data), size=len(data)
        )
    return Checkpoint(kind=kind, data=data, blob=None, size=len(data))


def copy_checkpoint(
    checkpoint: Checkpoint, blobs: BlobStore, workflow_id: str, task_id: str
) -> Checkpoint:
    """A checkpoint for another workflow (a fork): a blob gets a copy of its own, so
    deleting either workflow leaves the other's intact."""
    if checkpoint.blob is None:
        return checkpoint
    url = blobs.put(workflow_id, task_id, blobs.get(checkpoint.blob))
    return Checkpoint(kind=checkpoint.kind, data=None, blob=url, size=checkpoint.size)


def read_checkpoint(checkpoint: Checkpoint, blobs: BlobStore) -> Any:
    data = checkpoint.data if checkpoint.blob is None else blobs.get(checkpoint.blob)
    assert data is not None
    return loads(data)
