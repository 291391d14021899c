"""The database plumbing: how the connection is configured for each kind of process
(`config`), and the PostgreSQL backend whose blocking calls cannot outlive their deadline
(`postgresql`, `watchdog`)."""
