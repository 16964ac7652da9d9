"""What a gallery folder holds (``faceforge inspect GALLERY``): people, embeddings, index and
the model that made them, read and checked as a search reads them."""

from __future__ import annotations

from pathlib import Path

from faceforge.inference.matching.gallery_json import METADATA_FILE
from faceforge.inference.matching.storage import read_gallery

#: people named in the report, most embeddings first
LISTED_PEOPLE = 5


def describe_gallery_folder(path: str | Path) -> list[str] | None:
    """Lines describing the gallery in folder ``path``; ``None`` when it holds none."""
    path = Path(path)
    if not (path / METADATA_FILE).is_file():
        return None
    gallery = read_gallery(path)
    counts = {name: len(vectors) for name, vectors in gallery.embeddings.items()}
    largest = sorted(counts, key=lambda name: (-counts[name], name))[:LISTED_PEOPLE]
    more = f", ... ({len(counts) - len(largest):,} more)" if len(counts) > len(largest) else ""
    return [
        f"{path}: faceforge gallery, {len(counts):,} people, {sum(counts.values()):,} "
        f"embeddings ({gallery.mode} mode), {gallery.index_type} index",
        f"model: {gallery.model}, {gallery.embedding_size}-d, fingerprint {gallery.fingerprint}",
        "people: " + ", ".join(f"{name} ({counts[name]})" for name in largest) + more,
        f"search: faceforge search --gallery {path} --checkpoint MODEL PHOTOS (the same model)",
    ]
