"""Django's PostgreSQL backend with a client-side deadline on every blocking call: set
`ENGINE` to `"portal.db.postgresql"` (settings do so whenever `DATABASE_URL` is PostgreSQL)."""
