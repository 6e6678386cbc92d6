"""SQLite storage: connection, ordered named migrations, the batched writer, report queries."""
