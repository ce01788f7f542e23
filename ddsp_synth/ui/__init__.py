"""Pieces of the web demo (``app.py``) that are more than layout: the effects rack panel."""
