"""The memlog command-line interface (Typer): thin commands over memlog.engine."""
