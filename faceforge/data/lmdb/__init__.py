"""faceforge's LMDB dataset format: the layout (:mod:`.layout`) and its writer (:mod:`.writer`);
the reader is :class:`faceforge.data.readers.LmdbReader`."""
