"""Pure functions from one IR to the next, one verb per module (see ``pipeline.py`` for their order)."""
