"""What training, evaluation and deployment all read: the model layer and the formats.

* :func:`~faceforge.core.model_source.create_model` / :func:`~.model_source.load_model`: a
  backbone from an architecture name, a pretrained entry, a checkpoint or any weights file;
* :func:`~faceforge.core.embedder.load_embedder` / :class:`~.embedder.Embedder`: aligned
  faces to embeddings with the model's contract, flip TTA and a pluggable runtime backend;
* the checkpoint format, the preprocessing contract, compute precision, vector maths.

Imports base modules, ``data``, ``models`` and ``losses`` only; ``evaluation``, ``train``
and ``inference`` build on it (see ``docs/architecture.md``).

>>> from faceforge.core import create_model, load_embedder
>>> create_model("iresnet50").fc.out_features
512
"""

from faceforge.core.embedder import EMBEDDER_BACKENDS, Embedder, load_embedder
from faceforge.core.model_source import (
    LoadedModel,
    ModelSource,
    create_model,
    import_weights,
    load_model,
)
from faceforge.core.pretrained import PRETRAINED, pretrained_weights

__all__ = [
    "EMBEDDER_BACKENDS",
    "PRETRAINED",
    "Embedder",
    "LoadedModel",
    "ModelSource",
    "create_model",
    "import_weights",
    "load_embedder",
    "load_model",
    "pretrained_weights",
]
