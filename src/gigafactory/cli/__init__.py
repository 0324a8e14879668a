"""The ``gigafactory`` command line (Typer + Rich)."""
