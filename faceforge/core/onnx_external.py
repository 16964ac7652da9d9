"""Checks of an ONNX file's external-data references before anything reads them.

A tensor stored outside the ``.onnx`` file names its file (``location``) and byte range
(``offset``, ``length``). A crafted model could point that at any file the reader can open
(``../../home/user/.ssh/id_rsa``, ``/etc/passwd``, a symbolic link) and have its bytes read
as weights; older onnx releases (before 1.17) follow such paths. faceforge therefore opens
ONNX files without their external data and accepts a reference only when it names a regular
file inside the model's folder (no absolute path, no ``..``, no symbolic link) and a byte
range inside that file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from faceforge.errors import CheckpointError, shorten

#: TensorProto.DataLocation.EXTERNAL
EXTERNAL = 1


def graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph``: initializers (dense and sparse), node attributes, and
    those of subgraphs (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from graph_tensors(subgraph)


def check_external_data(proto: Any, path: Path) -> None:
    """CheckpointError (one line naming ``path`` and the tensor) unless every external-data
    reference of ``proto`` (the model read from ``path``) stays inside ``path``'s folder."""
    folder = path.parent.resolve()
    for tensor in graph_tensors(proto.graph):
        if tensor.data_location == EXTERNAL:
            _check_reference(tensor, folder, f"{path}: tensor {shorten(tensor.name)}")


def _check_reference(tensor: Any, folder: Path, where: str) -> None:
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    if not isinstance(location, str):  # protobuf hands over a non-UTF-8 string as bytes
        raise CheckpointError(f"{where}: its external-data location is not UTF-8 text")
    named = f"{where} keeps its data in {shorten(location)}"
    parts = PurePath(location).parts
    if not location or PurePath(location).is_absolute() or ".." in parts or "\0" in location:
        raise CheckpointError(f"{named}: not a file inside the model's folder; refused")
    target = folder / location
    if target.is_symlink() or not target.resolve().is_relative_to(folder):
        raise CheckpointError(f"{named}: a link out of the model's folder; refused")
    if not target.is_file():
        raise CheckpointError(f"{named}: no such file beside the model")
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise CheckpointError(f"{named}: offset and length must be integers") from None
    size = target.stat().st_size
    end = size if length is None else offset + length
    if offset < 0 or (length is not None and length < 0) or end > size:
        raise CheckpointError(
            f"{named}: bytes {offset}..{end} do not lie inside the file ({size} bytes)"
        )
