"""Event-sourced storage: msgspec events, the append-only DuckDB log and the Zarr blob store."""
