"""Dataset preparation tools built on the deploy flow (e.g. aligning a photo folder)."""
