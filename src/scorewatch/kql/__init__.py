"""scorewatch.kql: KQL compiled to SQL for the store (``compile_query``), the query API and CLI."""

from scorewatch.kql.compiler import CompiledQuery, compile_query
from scorewatch.kql.errors import KqlError

__all__ = ["CompiledQuery", "KqlError", "compile_query"]
