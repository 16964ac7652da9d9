"""Training data sources by name (``data.source``): each builds a storage reader from config.

A new source is one function here taking the :class:`~faceforge.config.DataConfig`.
"""

from __future__ import annotations

from faceforge.config import DataConfig
from faceforge.data.readers import (
    ImageFolderReader,
    ListFileReader,
    LmdbReader,
    Reader,
    RecordIOReader,
    SyntheticReader,
)
from faceforge.data.synthetic import SyntheticFaces, render_workers
from faceforge.errors import ConfigError
from faceforge.registry import Registry


def _synthetic(cfg: DataConfig) -> Reader:
    syn = cfg.synthetic
    return SyntheticReader(
        SyntheticFaces(syn.seed),
        syn.num_identities,
        syn.images_per_identity,
        cache=syn.cache,
        workers=render_workers(),
    )


def _path(cfg: DataConfig) -> str:
    if not cfg.path:
        raise ConfigError(f"data.source={cfg.source!r} needs data.path")
    return cfg.path


def _folder(cfg: DataConfig) -> Reader:
    return ImageFolderReader(_path(cfg), cfg.max_pixels)


def _list(cfg: DataConfig) -> Reader:
    return ListFileReader(_path(cfg), cfg.root or None, cfg.max_pixels)


def _recordio(cfg: DataConfig) -> Reader:
    return RecordIOReader(_path(cfg), skip_corrupt=cfg.skip_corrupt, max_pixels=cfg.max_pixels)


def _lmdb(cfg: DataConfig) -> Reader:
    return LmdbReader(_path(cfg), cfg.max_pixels)


#: ``data.source`` name -> reader factory
DATA_SOURCES: Registry[Reader] = Registry.of(
    "data source",
    {
        "synthetic": _synthetic,
        "folder": _folder,
        "list": _list,
        "recordio": _recordio,
        "lmdb": _lmdb,
    },
)


def build_reader(cfg: DataConfig) -> Reader:
    """The storage reader for ``cfg.source``."""
    return DATA_SOURCES.get(cfg.source)(cfg)
