"""The HTTP face service: ``faceforge serve`` (FastAPI + uvicorn) over a database store.

A store (:mod:`.store`: SQLite or PostgreSQL) is the source of truth; every server keeps its
FAISS galleries in step with it through a change feed (:mod:`.galleries`); faces of
concurrent requests are embedded together (:mod:`.batcher`). See docs/serve.md.
"""
