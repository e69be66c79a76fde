"""Emitters: schedule IR → source text through Jinja2 templates (``templates/``)."""
