"""polygen's own immutable IRs: no SymPy and no torch below this line."""
