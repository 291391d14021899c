"""The throwaway databases the benchmarks build their fixtures in (on the same server as
DATABASE_URL). Only a database whose name says "bench" is ever dropped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def admin_connection(database_url: str) -> Any:
    import psycopg

    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    return psycopg.connect(admin_url, autocommit=True)


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def drop(database_url: str, names: Iterable[str], *, create: bool = False) -> None:
    """Drops the databases (and creates them afresh with `create`)."""
    from psycopg import sql

    with admin_connection(database_url) as conn:
        for name in names:
            if "bench" not in name:
                raise SystemExit(f"refusing to drop {name!r}: its name must say 'bench'")
            identifier = sql.Identifier(name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            if create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
