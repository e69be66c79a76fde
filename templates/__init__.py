"""Jinja2 templates of polygen's emitters (shipped in the wheel as polygen._templates)."""
