"""Lookups the searches of the admin and the console share, registered on every CharField
when the portal app is ready: `prefix` (case-sensitive on every database), `hexprefix` and
`hexid` (the portal's lower-case hex ids, pasted in any case)."""

from __future__ import annotations

import re
from typing import Any

from django.db import NotSupportedError
from django.db.models import CharField
from django.db.models.lookups import Exact, StartsWith


@CharField.register_lookup
class Prefix(StartsWith):
    """`startswith` with one meaning on every database: case-sensitive, as external ids are
    ("Alice" and "alice" are two users). PostgreSQL's LIKE already is, and is served by the
    `varchar_pattern_ops` indexes; SQLite's LIKE ignores the case of ASCII letters, so there
    the prefix is matched with GLOB, which is case-sensitive and also served by an index."""

    lookup_name = "prefix"

    def get_rhs_op(self, connection: Any, rhs: str) -> str:
        if not self.rhs_is_direct_value():
            raise NotSupportedError("a prefix search compares with a value")
        return connection.operators["startswith"] % rhs

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not self.rhs_is_direct_value():
            raise NotSupportedError("a prefix search compares with a value")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        pattern = re.sub(r"([*?\[])", r"[\1]", str(self.rhs)) + "*"
        return f"{lhs} GLOB %s", [*lhs_params, pattern]


@CharField.register_lookup
class HexPrefix(Prefix):
    """`prefix` after lower-casing the value, for the portal's lower-case hex ids (key ids)."""

    lookup_name = "hexprefix"

    def get_prep_lookup(self) -> Any:
        if isinstance(self.rhs, str):
            self.rhs = self.rhs.lower()
        return super().get_prep_lookup()


@CharField.register_lookup
class HexId(Exact):
    """`exact` after lower-casing the value: the ids the portal issues (`crypto.public_id`)
    are lower-case hex, and support may paste one in upper case from a customer's ticket."""

    lookup_name = "hexid"

    def get_rhs_op(self, connection: Any, rhs: str) -> str:
        return connection.operators["exact"] % rhs

    def get_prep_lookup(self) -> Any:
        if isinstance(self.rhs, str):
            self.rhs = self.rhs.lower()
        return super().get_prep_lookup()
