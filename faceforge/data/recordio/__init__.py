"""MXNet RecordIO without mxnet: the format (:mod:`.format`), the ``.idx``/``property``
files (:mod:`.index`), the image catalogue and its cache (:mod:`.catalog`, :mod:`.cache`),
the writer (:mod:`.writer`) and the optional DALI pipeline (:mod:`.dali`). The reader is
:class:`faceforge.data.readers.RecordIOReader`."""
