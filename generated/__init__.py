"""Generated modules of the built-in specs, written by `polygen build` (shipped as polygen._generated)."""
