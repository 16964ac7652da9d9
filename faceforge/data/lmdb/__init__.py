"""faceforge's LMDB dataset format: the layout (:mod:`.layout`), the checked page reader that
reads it without a memory map (:mod:`.pages`) and its writer (:mod:`.writer`); the dataset
reader is :class:`faceforge.data.readers.LmdbReader`."""
