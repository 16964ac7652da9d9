"""What training and deployment both read: the checkpoint format, the preprocessing contract,
batch embedding, compute precision, image fitting and embedding normalisation.

Imports base modules, ``data``, ``models`` and ``losses`` only; ``train``, ``evaluation`` and
``inference`` build on it (see ``docs/architecture.md``).
"""
