"""Hand-written SQL for the hottest paths: compiling an ORM query costs more CPU than
PostgreSQL spends answering it (a select_related lookup by a unique key: ~0.6 ms to compile,
~0.1 ms to run). A statement written once as text, with `columns()` naming every field of a
table, is read back with `instance()`, which applies the same converters as the ORM, so it
works on SQLite and PostgreSQL alike; `from_json()` reads a PostgreSQL `row_to_json()`;
`insert_sql()` writes instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def fields_of(model: type[Model]) -> list[Field]:
    return list(model._meta.concrete_fields)


def columns(model: type[Model], alias: str) -> str:
    """`alias.col1, alias.col2, …` for every field of `model`, in `fields_of` order."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in fields_of(model))


@cache
def _converters(model: type[Model], vendor: str) -> list[tuple[Any, list[Callable[..., Any]]]]:
    """(column expression, its converters) per field, as the ORM's compiler finds them."""
    del vendor  # part of the cache key: converters differ between backends
    result = []
    for field in fields_of(model):
        column = field.get_col(model._meta.db_table)
        found = [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]
        result.append((column, found))
    return result


def instance(model: type[M], values: Sequence[Any]) -> M:
    """A saved instance of `model` from the values of `columns(model, …)`."""
    converted = []
    for value, (column, converters) in zip(
        values, _converters(model, connection.vendor), strict=True
    ):
        for convert in converters:
            value = convert(value, column, connection)
        converted.append(value)
    names = [field.attname for field in fields_of(model)]
    return model.from_db(connection.alias, names, converted)


def cursor() -> Any:
    """A cursor for the hot path's statements: on PostgreSQL each is prepared once per
    connection (`portal.db.postgresql.base.PreparedCursor`); elsewhere Django's cursor. Only
    for a fixed text whose values are all bound: each distinct text is a prepared statement
    kept for the connection's life."""
    prepared = getattr(connection, "prepared_cursor", None)
    return prepared() if prepared is not None else connection.cursor()


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with cursor() as statement:
        statement.execute(sql, params)
        return statement.fetchone()


def from_json(model: type[M], data: dict[str, Any]) -> M:
    """A saved instance from a `row_to_json()` of its table, each value through the field's
    `to_python` (right for text, booleans, integers, keys and timestamps: see the test that
    keeps the models read this way to such fields)."""
    fields = fields_of(model)
    return model.from_db(
        connection.alias,
        [field.attname for field in fields],
        [field.to_python(data[field.column]) for field in fields],
    )


def insert_sql(model: type[Model], objects: Sequence[Model]) -> tuple[str, list[Any]]:
    """A plain multi-row INSERT of `objects` (all fields but the primary key) and its params."""
    fields = [field for field in fields_of(model) if not field.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 (identifiers from the model, values bound)
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * len(objects))}"
    )
    params = [
        field.get_db_prep_save(getattr(obj, field.attname), connection)
        for obj in objects
        for field in fields
    ]
    return sql, params
