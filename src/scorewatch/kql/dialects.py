"""What differs between SQL engines, in one place: :class:`Dialect` (DuckDB) and
:class:`ClickHouseDialect`.

The compiler builds portable sqlglot expressions wherever sqlglot has one (``exp.Lower``,
``exp.Coalesce``, ``exp.IntDiv``...) and lets sqlglot print them for the dialect. Everything that has
no portable node (JSON access, time buckets and arithmetic, quantiles, regular expressions, hashing,
arrays) goes through a :class:`Dialect` method, and :meth:`Dialect.finish` rewrites the portable nodes
an engine reads differently; an engine is a subclass, not an edit of the compiler.

How values are represented: DuckDB keeps dynamic values as its JSON type and timespans as INTERVAL;
ClickHouse keeps dynamic values as JSON text in a String and timespans as Int64 microseconds (a
timespan column comes back as an int; readers turn it into a timespan by the column's KQL type).
"""

from __future__ import annotations

from datetime import datetime

from sqlglot import exp


def fn(name: str, *args: exp.Expr) -> exp.Expr:
    """A call of the engine function ``name`` (a fixed name from this module, never user text)."""
    return exp.Anonymous(this=name, expressions=list(args))


def lit(value: str | int | float) -> exp.Expr:
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, float) and value != value:  # NaN
        return exp.cast(exp.Literal.string("NaN"), "DOUBLE")
    if isinstance(value, float):
        # An exponent makes the engine read a DOUBLE, not a DECIMAL: KQL's real is a double.
        text = repr(value)
        return exp.Literal.number(text if "e" in text or "inf" in text else text + "e0")
    return exp.Literal.number(value)


class Dialect:
    """The DuckDB dialect (the default, embedded store)."""

    name = "duckdb"
    types = {"string": "VARCHAR", "datetime": "TIMESTAMP", "real": "DOUBLE", "int": "INTEGER",
             "long": "BIGINT", "bool": "BOOLEAN", "dynamic": "JSON", "timespan": "INTERVAL"}

    # ------------------------------------------------------------ literals and casts
    def cast(self, value: exp.Expr, kql_type: str) -> exp.Expr:
        return exp.cast(value, self.types[kql_type])

    def try_cast(self, value: exp.Expr, kql_type: str) -> exp.Expr:
        return exp.TryCast(this=value, to=exp.DataType.build(self.types[kql_type]))

    def null(self, kql_type: str) -> exp.Expr:
        return self.cast(exp.Null(), kql_type)

    def timestamp(self, value: datetime) -> exp.Expr:
        return exp.cast(exp.Literal.string(value.strftime("%Y-%m-%d %H:%M:%S.%f")), "TIMESTAMP")

    def interval(self, micros: float) -> exp.Expr:
        return fn("to_microseconds", exp.Literal.number(int(round(micros))))

    def interval_from_micros(self, micros: exp.Expr) -> exp.Expr:
        return fn("to_microseconds", exp.cast(micros, "BIGINT"))

    def interval_micros(self, interval: exp.Expr) -> exp.Expr:
        return fn("epoch_us", interval)

    def epoch_micros(self, ts: exp.Expr) -> exp.Expr:
        return fn("epoch_us", ts)

    def timestamp_from_micros(self, micros: exp.Expr) -> exp.Expr:
        return fn("make_timestamp", micros)

    def shift(self, ts: exp.Expr, span: exp.Expr, *, subtract: bool = False) -> exp.Expr:
        """The datetime ``ts`` plus (minus) the timespan ``span``."""
        return (exp.Sub if subtract else exp.Add)(this=ts, expression=span)

    def elapsed(self, start: exp.Expr, end: exp.Expr) -> exp.Expr:
        """The timespan from ``start`` to ``end`` (two datetimes)."""
        return exp.Sub(this=end, expression=start)

    def finish(self, query: exp.Expr) -> exp.Expr:
        """The whole query, once built, with what this engine reads differently rewritten."""
        return query

    # ------------------------------------------------------------ dynamic (JSON) values
    def json_get(self, root: exp.Expr, keys: list[str | int]) -> exp.Expr:
        return fn("json_extract", root, lit(self.json_path(keys)))

    def json_get_text(self, root: exp.Expr, keys: list[str | int]) -> exp.Expr:
        """The value at ``keys`` as text: a JSON string unquoted, anything else as JSON text."""
        return fn("json_extract_string", root, lit(self.json_path(keys)))

    @staticmethod
    def json_path(keys: list[str | int]) -> str:
        """The path to ``keys``: a JSONPath with quoted keys (``$."Request Id"[0]``, the fastest form),
        or an RFC 6901 pointer for a key holding a quote or a backslash, which JSONPath cannot quote
        (a pointer has no from-the-end index, so such a path with ``[-1]`` is refused)."""
        if not keys:
            return "$"
        if any(isinstance(k, str) and ('"' in k or "\\" in k) for k in keys):
            if any(isinstance(k, int) and k < 0 for k in keys):
                raise ValueError("a negative index after a key holding a quote or a backslash")
            return "/" + "/".join(str(k).replace("~", "~0").replace("/", "~1") for k in keys)
        return "$" + "".join(f"[#{k}]" if isinstance(k, int) and k < 0 else f"[{k}]" if isinstance(k, int)
                             else f'."{k}"' for k in keys)

    def json_text(self, value: exp.Expr) -> exp.Expr:
        return exp.cast(value, "VARCHAR")

    def json_literal(self, text: str) -> exp.Expr:
        """A dynamic constant from its JSON text."""
        return exp.cast(lit(text), "JSON")

    def json_object(self, items: dict[str, exp.Expr]) -> exp.Expr:
        """A bag of these properties (numbers)."""
        return self.to_json(exp.Struct(expressions=[exp.PropertyEQ(this=exp.to_identifier(k), expression=v)
                                                    for k, v in items.items()]))

    def json_type(self, value: exp.Expr) -> exp.Expr:
        return fn("json_type", value)

    def to_json(self, value: exp.Expr) -> exp.Expr:
        return fn("to_json", value)

    def parse_json(self, text: exp.Expr) -> exp.Expr:
        # KQL's parse_json of text that is not JSON is that text as a dynamic string.
        return exp.Case(ifs=[exp.If(this=fn("json_valid", text), true=exp.cast(text, "JSON"))],
                        default=self.to_json(text))

    def json_array_length(self, value: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=self.json_type(value), expression=lit("ARRAY")),
                                    true=exp.cast(fn("json_array_length", value), "BIGINT"))])

    def json_keys(self, value: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=self.json_type(value), expression=lit("OBJECT")),
                                    true=self.to_json(fn("json_keys", value)))])

    def json_elements(self, value: exp.Expr) -> exp.Expr:
        """A list to ``unnest``: an array's elements; a bag's properties, each as a one-property bag
        (``{"a": 1, "b": 2}`` gives ``{"a": 1}`` and ``{"b": 2}``); anything else (null included) itself."""
        key = exp.to_identifier("_k")
        pointer = exp.DPipe(this=lit("/"), expression=fn("replace", fn("replace", exp.Column(this=key.copy()), lit("~"),
                                                                       lit("~0")), lit("/"), lit("~1")))
        one_property = fn("json_object", exp.Column(this=key.copy()), fn("json_extract", value.copy(), pointer))
        properties = fn("list_transform", fn("json_keys", value.copy()),
                        exp.Lambda(this=one_property, expressions=[key]))
        kind = self.json_type(value.copy())
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=kind, expression=lit("ARRAY")), true=exp.cast(value.copy(), "JSON[]")),
                             exp.If(this=exp.EQ(this=kind.copy(), expression=lit("OBJECT")), true=properties)],
                        default=exp.Array(expressions=[value]))

    def unnest(self, value: exp.Expr) -> exp.Expr:
        return fn("unnest", value)

    def unnest_together(self, values: list[exp.Expr]) -> list[exp.Expr] | exp.Expr:
        """Several lists expanded side by side (the shorter padded with nulls): one expression per
        list, or one expression of tuples (element ``i`` from list ``i``, see :meth:`tuple_element`)."""
        return [self.unnest(value) for value in values]  # DuckDB's unnests in one SELECT line up

    def tuple_element(self, value: exp.Expr, index: int) -> exp.Expr:
        return exp.Bracket(this=value, expressions=[lit(index + 1)])

    def range(self, count: exp.Expr) -> exp.Expr:
        """The list 0, 1, ..., count - 1."""
        return fn("range", count)

    def ordered_list(self, value: exp.Expr, order: exp.Expr) -> exp.Expr:
        """The aggregate JSON array of ``value`` in the order of ``order`` (nulls kept)."""
        return self.to_json(exp.ArrayAgg(this=exp.Order(this=value, expressions=[exp.Ordered(this=order)])))

    def json_at(self, root: exp.Expr, index: exp.Expr, numeric: bool) -> exp.Expr:
        """``root[index]`` for a computed ``index``: an array position (negative from the end) or a key."""
        if numeric:
            position = exp.cast(index, "VARCHAR")
            from_end = exp.Case(ifs=[exp.If(this=exp.LT(this=index.copy(), expression=lit(0)), true=lit("#"))],
                                default=lit(""))
            path = fn("concat", lit("$["), from_end, position, lit("]"))
        else:
            escaped = fn("replace", fn("replace", index, lit("~"), lit("~0")), lit("/"), lit("~1"))
            path = fn("concat", lit("/"), escaped)
        return fn("json_extract", root, path)

    def number_list(self, value: exp.Expr) -> exp.Expr:
        """A dynamic array as a list of doubles (null when it is not an array of numbers)."""
        return exp.TryCast(this=value, to=exp.DataType.build("DOUBLE[]"))

    def series_stats(self, values: exp.Expr) -> dict[str, exp.Expr]:
        """min, min_idx, max, max_idx, avg, stdev, variance of a list of doubles (indexes from 0)."""
        def stat(name: str) -> exp.Expr:
            return fn(name, values.copy())
        return {"min": stat("list_min"),
                "min_idx": exp.Sub(this=fn("list_position", values.copy(), stat("list_min")), expression=lit(1)),
                "max": stat("list_max"),
                "max_idx": exp.Sub(this=fn("list_position", values.copy(), stat("list_max")), expression=lit(1)),
                "avg": stat("list_avg"), "stdev": stat("list_stddev_samp"), "variance": stat("list_var_samp")}

    def series_fir(self, values: exp.Expr, weights: list[float], offset: int, divisor: float) -> exp.Expr:
        """``y[i] = sum_j weights[j] * x[i + offset - j] / divisor``, positions outside the series as 0."""
        i = exp.to_identifier("_fir_i")
        terms: list[exp.Expr] = []
        for j, weight in enumerate(weights):
            at = exp.Add(this=exp.Column(this=i.copy()), expression=lit(offset - j + 1))  # lists count from 1
            inside = exp.and_(exp.GTE(this=at.copy(), expression=lit(1)),
                              exp.LTE(this=at.copy(), expression=self.list_length(values.copy())))
            element = exp.Coalesce(this=self.list_at(values.copy(), at), expressions=[lit(0.0)])
            terms.append(exp.Mul(this=lit(float(weight)), expression=exp.Case(ifs=[exp.If(this=inside, true=element)],
                                                                              default=lit(0.0))))
        total = terms[0]
        for term in terms[1:]:
            total = exp.Add(this=total, expression=term)
        if divisor != 1:
            total = exp.Div(this=exp.Paren(this=total), expression=lit(float(divisor)))
        return self.to_json(self.list_map(exp.Lambda(this=total, expressions=[i]),
                                          fn("range", self.list_length(values.copy()))))

    def list_length(self, items: exp.Expr) -> exp.Expr:
        return fn("len", items)

    def list_at(self, items: exp.Expr, position: exp.Expr) -> exp.Expr:
        """The element at ``position`` (from 1) of a list."""
        return fn("list_extract", items, position)

    def list_map(self, function: exp.Expr, items: exp.Expr) -> exp.Expr:
        """``function`` (a lambda) applied to each element of ``items``."""
        return fn("list_transform", items, function)

    def string_split(self, text: exp.Expr, delimiter: exp.Expr) -> exp.Expr:
        """The list of the parts of ``text`` between ``delimiter``s."""
        return fn("string_split", text, delimiter)

    def split(self, text: exp.Expr, delimiter: exp.Expr) -> exp.Expr:
        return self.to_json(self.string_split(text, delimiter))

    def list_element(self, items: exp.Expr, index: exp.Expr) -> exp.Expr:
        """``[items[index]]`` with a 0-based ``index`` (DuckDB lists count from 1)."""
        return self.to_json(exp.Array(expressions=[fn("list_extract", items, exp.Add(this=index, expression=lit(1)))]))

    # ------------------------------------------------------------ strings
    def concat(self, parts: list[exp.Expr]) -> exp.Expr:
        """Concatenation where a null part counts as empty (as KQL's ``strcat``)."""
        return fn("concat", *parts)

    def concat_ws(self, delimiter: exp.Expr, parts: list[exp.Expr]) -> exp.Expr:
        return fn("concat_ws", delimiter, *parts)

    def replace(self, text: exp.Expr, old: exp.Expr, new: exp.Expr) -> exp.Expr:
        return fn("replace", text, old, new)

    def contains(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return fn("contains", text, part)

    def starts_with(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return fn("starts_with", text, part)

    def ends_with(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return fn("suffix", text, part)

    def regex_match(self, text: exp.Expr, pattern: exp.Expr) -> exp.Expr:
        return fn("regexp_matches", text, pattern)

    def regex_extract(self, text: exp.Expr, pattern: exp.Expr, group: int) -> exp.Expr:
        return fn("regexp_extract", text, pattern, lit(group))

    def regex_replace(self, text: exp.Expr, pattern: exp.Expr,
                      replacement: exp.Expr) -> exp.Expr:
        return fn("regexp_replace", text, pattern, replacement, lit("g"))

    def strftime(self, ts: exp.Expr, fmt: str) -> exp.Expr:
        return fn("strftime", ts, lit(fmt))

    def round(self, value: exp.Expr, digits: exp.Expr) -> exp.Expr:
        """``value`` rounded to ``digits`` decimals, halves away from zero (as KQL)."""
        return exp.Round(this=value, decimals=digits)

    def hash(self, value: exp.Expr) -> exp.Expr:
        # DuckDB's hash is UBIGINT; keep it a non-negative BIGINT like KQL's.
        return exp.cast(exp.Mod(this=fn("hash", value), expression=lit(9223372036854775807)), "BIGINT")

    # ------------------------------------------------------------ datetimes
    def time_bucket(self, micros: float, ts: exp.Expr) -> exp.Expr:
        """``ts`` floored to a multiple of ``micros`` counted from the Unix epoch, as KQL bins. For a
        width that divides a day DuckDB's default origin (2000-01-03) gives the same bins, faster."""
        if 86_400_000_000 % micros == 0:
            return fn("time_bucket", self.interval(micros), ts)
        return fn("time_bucket", self.interval(micros), ts, self.timestamp(datetime(1970, 1, 1)))

    def date_trunc(self, unit: str, ts: exp.Expr) -> exp.Expr:
        return exp.cast(fn("date_trunc", lit(unit), ts), "TIMESTAMP")

    def day_of_week(self, ts: exp.Expr) -> exp.Expr:
        """Days since the previous Sunday, as a number (Sunday is 0, as in KQL)."""
        return fn("dayofweek", ts)

    def date_diff(self, unit: str, start: exp.Expr, end: exp.Expr) -> exp.Expr:
        return fn("date_diff", lit(unit), start, end)

    def date_add(self, unit: str, amount: exp.Expr, ts: exp.Expr) -> exp.Expr:
        return exp.Add(this=ts, expression=fn("to_" + {"millisecond": "milliseconds",
                                                        "microsecond": "microseconds"}.get(unit, unit + "s"),
                                              exp.cast(amount, "BIGINT")))

    # ------------------------------------------------------------ aggregates
    def percentile(self, value: exp.Expr, percent: float) -> exp.Expr:
        # Nearest rank, as KQL (quantile_cont would interpolate).
        return fn("quantile_disc", value, lit(percent / 100.0))

    def percentiles(self, value: exp.Expr, percents: list[float]) -> list[exp.Expr]:
        """One expression per percent. Each reads its element of one list-valued quantile, which DuckDB
        computes once (identical aggregates are shared): one sort per group instead of one per percent."""
        fractions = exp.Array(expressions=[lit(p / 100.0) for p in percents])
        return [fn("list_extract", fn("quantile_disc", value.copy(), fractions.copy()), lit(i + 1))
                for i in range(len(percents))]

    def collect(self, value: exp.Expr, distinct: bool) -> exp.Expr:
        inner: exp.Expr = exp.Distinct(expressions=[value]) if distinct else value
        listed = exp.Filter(this=fn("list", inner),
                            expression=exp.Where(this=exp.Not(this=exp.Is(this=value, expression=exp.Null()))))
        return self.to_json(exp.Coalesce(this=listed, expressions=[exp.Array(expressions=[])]))

    def arg_extreme(self, value: exp.Expr, by: exp.Expr, largest: bool) -> exp.Expr:
        # the _null forms keep the row's value even when it is null, as KQL does
        return fn("arg_max_null" if largest else "arg_min_null", value, by)

    def any_value(self, value: exp.Expr) -> exp.Expr:
        return fn("any_value", value)


# ---------------------------------------------------------------------------------------------------
# ClickHouse

_CH_TIME_UNITS = {"year": "Years", "quarter": "Quarters", "month": "Months", "week": "Weeks", "day": "Days",
                  "hour": "Hours", "minute": "Minutes", "second": "Seconds", "millisecond": "Milliseconds",
                  "microsecond": "Microseconds"}
_CH_START_OF = {"year": "toStartOfYear", "quarter": "toStartOfQuarter", "month": "toStartOfMonth",
                "week": "toMonday", "day": "toStartOfDay", "hour": "toStartOfHour", "minute": "toStartOfMinute",
                "second": "toStartOfSecond"}
# strftime (as the compiler writes formats) → Joda (ClickHouse's formatDateTimeInJodaSyntax)
_JODA = {"%Y": "yyyy", "%y": "yy", "%m": "MM", "%-m": "M", "%d": "dd", "%-d": "d", "%H": "HH", "%-H": "H",
         "%I": "hh", "%-I": "h", "%M": "mm", "%-M": "m", "%S": "ss", "%-S": "s", "%f": "SSSSSS", "%g": "SSS",
         "%p": "a"}


def _joda(strftime: str) -> str:
    out, text, i = [], "", 0
    while i < len(strftime):
        code = strftime[i:i + 3] if strftime[i:i + 2] == "%-" else strftime[i:i + 2]
        if code in _JODA or code == "%%":
            if text:
                out.append("'" + text.replace("'", "''") + "'")
                text = ""
            out.append(_JODA.get(code, "%"))
            i += len(code)
        else:
            text += strftime[i]
            i += 1
    if text:
        out.append("'" + text.replace("'", "''") + "'")
    return "".join(out)


def _text(value: exp.Expr) -> exp.Expr:
    """A JSON text never null (an array ClickHouse makes of it cannot be nullable)."""
    return exp.Coalesce(this=value, expressions=[lit("")])


def _ch_type(name: str) -> exp.DataType:
    return exp.DataType.build(name, dialect="clickhouse")


class ClickHouseDialect(Dialect):
    """ClickHouse: dynamic values are JSON text (String), timespans Int64 microseconds, datetimes
    ``DateTime64(6, 'UTC')``. The store runs the SQL with the settings that make ClickHouse read it
    as meant (store/clickhouse.py:QUERY_SETTINGS: CASTs keep nulls, outer joins fill with nulls, a
    column name wins over an alias)."""

    name = "clickhouse"
    types = {"string": "Nullable(String)", "datetime": "Nullable(DateTime64(6, 'UTC'))",
             "real": "Nullable(Float64)", "int": "Nullable(Int32)", "long": "Nullable(Int64)",
             "bool": "Nullable(Bool)", "dynamic": "Nullable(String)", "timespan": "Nullable(Int64)"}

    # ------------------------------------------------------------ literals and casts
    def cast(self, value: exp.Expr, kql_type: str) -> exp.Expr:
        return exp.Cast(this=value, to=_ch_type(self.types[kql_type]))

    def try_cast(self, value: exp.Expr, kql_type: str) -> exp.Expr:
        if kql_type == "datetime":
            return fn("parseDateTime64BestEffortOrNull", exp.cast(value, "VARCHAR"), lit(6), lit("UTC"))
        if kql_type == "dynamic":
            return self.parse_json(exp.cast(value, "VARCHAR"))
        target = self.types[kql_type].removeprefix("Nullable(").removesuffix(")")
        return fn("accurateCastOrNull", value, lit(target))

    def timestamp(self, value: datetime) -> exp.Expr:
        return fn("toDateTime64", lit(value.strftime("%Y-%m-%d %H:%M:%S.%f")), lit(6), lit("UTC"))

    def interval(self, micros: float) -> exp.Expr:
        return exp.cast(exp.Literal.number(int(round(micros))), "BIGINT")

    def interval_from_micros(self, micros: exp.Expr) -> exp.Expr:
        return fn("toInt64", fn("round", micros))

    def interval_micros(self, interval: exp.Expr) -> exp.Expr:
        return interval

    def epoch_micros(self, ts: exp.Expr) -> exp.Expr:
        return fn("toUnixTimestamp64Micro", ts)

    def timestamp_from_micros(self, micros: exp.Expr) -> exp.Expr:
        return fn("fromUnixTimestamp64Micro", fn("toInt64", micros), lit("UTC"))

    def shift(self, ts: exp.Expr, span: exp.Expr, *, subtract: bool = False) -> exp.Expr:
        return fn("subtractMicroseconds" if subtract else "addMicroseconds", ts, span)

    def elapsed(self, start: exp.Expr, end: exp.Expr) -> exp.Expr:
        return fn("dateDiff", lit("microsecond"), start, end)

    def finish(self, query: exp.Expr) -> exp.Expr:
        def rewrite(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.JSON):
                return node.this  # dynamic values are JSON text already
            if isinstance(node, exp.Escape):
                return node.this  # LIKE's escape character is the backslash, always
            if isinstance(node, exp.NullSafeNEQ):
                return exp.Not(this=exp.Paren(this=exp.NullSafeEQ(this=node.this, expression=node.expression)))
            if isinstance(node, exp.Lower):
                return fn("lowerUTF8", node.this)
            if isinstance(node, exp.Upper):
                return fn("upperUTF8", node.this)
            if isinstance(node, exp.StrPosition):
                return fn("positionUTF8", node.this, node.args["substr"])
            if isinstance(node, exp.Substring):
                args = [node.this, node.args["start"]] + ([node.args["length"]] if node.args.get("length") else [])
                return fn("substringUTF8", *args)
            return node
        return query.transform(rewrite, copy=False)

    # ------------------------------------------------------------ dynamic (JSON text) values
    @staticmethod
    def _path(keys: list[str | int]) -> list[exp.Expr]:
        """JSONExtract's path: keys as strings, array positions counted from 1 (negative: from the end)."""
        return [lit(k + 1 if k >= 0 else k) if isinstance(k, int) else lit(k) for k in keys]

    def json_get(self, root: exp.Expr, keys: list[str | int]) -> exp.Expr:
        return exp.Nullif(this=fn("JSONExtractRaw", root, *self._path(keys)), expression=lit(""))

    def json_get_text(self, root: exp.Expr, keys: list[str | int]) -> exp.Expr:
        # as Nullable(String): a string unquoted, another value as its JSON text, null when absent
        return fn("JSONExtract", root, *self._path(keys), lit("Nullable(String)"))

    @staticmethod
    def json_path(keys: list[str | int]) -> str:
        return "".join(str(k) for k in keys)  # any key and index are fine: nothing to check

    def json_text(self, value: exp.Expr) -> exp.Expr:
        return value

    def json_literal(self, text: str) -> exp.Expr:
        return exp.cast(lit(text), "VARCHAR")

    def json_object(self, items: dict[str, exp.Expr]) -> exp.Expr:
        entries: list[exp.Expr] = []
        for key, value in items.items():
            entries += [lit(key), fn("toFloat64", value)]
        return fn("toJSONString", fn("map", *entries))

    def json_type(self, value: exp.Expr) -> exp.Expr:
        return fn("upper", fn("toString", fn("JSONType", value)))

    def to_json(self, value: exp.Expr) -> exp.Expr:
        return fn("toJSONString", value)

    def parse_json(self, text: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=fn("isValidJSON", text), true=text.copy())], default=self.to_json(text.copy()))

    def json_array_length(self, value: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=self.json_type(value), expression=lit("ARRAY")),
                                    true=fn("toInt64", fn("JSONLength", value.copy())))])

    def json_keys(self, value: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=self.json_type(value), expression=lit("OBJECT")),
                                    true=self.to_json(fn("JSONExtractKeys", _text(value.copy()))))])

    def json_elements(self, value: exp.Expr) -> exp.Expr:
        key = exp.to_identifier("_k")
        one_property = fn("concat", lit("{"), self.to_json(exp.Column(this=key.copy())), lit(":"),
                          fn("JSONExtractRaw", _text(value.copy()), exp.Column(this=key.copy())), lit("}"))
        properties = fn("arrayMap", exp.Lambda(this=one_property, expressions=[key]),
                        fn("JSONExtractKeys", _text(value.copy())))
        kind = self.json_type(value.copy())
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=kind, expression=lit("ARRAY")),
                                    true=fn("JSONExtractArrayRaw", _text(value.copy()))),
                             exp.If(this=exp.EQ(this=kind.copy(), expression=lit("OBJECT")), true=properties)],
                        default=exp.Array(expressions=[value]))

    def unnest(self, value: exp.Expr) -> exp.Expr:
        return fn("arrayJoin", value)

    def unnest_together(self, values: list[exp.Expr]) -> list[exp.Expr] | exp.Expr:
        # two arrayJoins in one SELECT make every pair: zip them first
        return self.unnest(fn("arrayZipUnaligned", *values))

    def tuple_element(self, value: exp.Expr, index: int) -> exp.Expr:
        return fn("tupleElement", value, lit(index + 1))

    def range(self, count: exp.Expr) -> exp.Expr:
        return fn("range", fn("toUInt64", count))

    def ordered_list(self, value: exp.Expr, order: exp.Expr) -> exp.Expr:
        pair = exp.to_identifier("_p")
        second = fn("tupleElement", exp.Column(this=pair.copy()), lit(2))
        pairs = fn("arraySort", fn("groupArray", exp.Tuple(expressions=[order, value])))
        return self.to_json(fn("arrayMap", exp.Lambda(this=second, expressions=[pair]), pairs))

    def json_at(self, root: exp.Expr, index: exp.Expr, numeric: bool) -> exp.Expr:
        if numeric:
            position = exp.Case(ifs=[exp.If(this=exp.GTE(this=index, expression=lit(0)),
                                            true=exp.Add(this=index.copy(), expression=lit(1)))], default=index.copy())
            return exp.Nullif(this=fn("JSONExtractRaw", root, position), expression=lit(""))
        return exp.Nullif(this=fn("JSONExtractRaw", root, index), expression=lit(""))

    def number_list(self, value: exp.Expr) -> exp.Expr:
        return fn("JSONExtract", _text(value), lit("Array(Float64)"))

    def series_stats(self, values: exp.Expr) -> dict[str, exp.Expr]:
        def stat(name: str) -> exp.Expr:
            return fn(name, values.copy())
        return {"min": stat("arrayMin"),
                "min_idx": exp.Sub(this=fn("indexOf", values.copy(), stat("arrayMin")), expression=lit(1)),
                "max": stat("arrayMax"),
                "max_idx": exp.Sub(this=fn("indexOf", values.copy(), stat("arrayMax")), expression=lit(1)),
                "avg": stat("arrayAvg"), "stdev": fn("arrayReduce", lit("stddevSampStable"), values.copy()),
                "variance": fn("arrayReduce", lit("varSampStable"), values.copy())}

    def list_length(self, items: exp.Expr) -> exp.Expr:
        return fn("length", items)

    def list_at(self, items: exp.Expr, position: exp.Expr) -> exp.Expr:
        return fn("arrayElement", items, fn("toInt64", position))

    def list_map(self, function: exp.Expr, items: exp.Expr) -> exp.Expr:
        return fn("arrayMap", function, items)

    def string_split(self, text: exp.Expr, delimiter: exp.Expr) -> exp.Expr:
        return fn("splitByString", delimiter, exp.Coalesce(this=text, expressions=[lit("")]))

    def list_element(self, items: exp.Expr, index: exp.Expr) -> exp.Expr:
        element = fn("arrayElementOrNull", items, exp.Add(this=index, expression=lit(1)))
        return self.to_json(exp.Array(expressions=[element]))

    # ------------------------------------------------------------ strings
    def concat(self, parts: list[exp.Expr]) -> exp.Expr:
        return fn("concat", *(exp.Coalesce(this=p, expressions=[lit("")]) for p in parts), lit(""))

    def concat_ws(self, delimiter: exp.Expr, parts: list[exp.Expr]) -> exp.Expr:
        return fn("concatWithSeparator", exp.Coalesce(this=delimiter, expressions=[lit("")]), *parts)

    def replace(self, text: exp.Expr, old: exp.Expr, new: exp.Expr) -> exp.Expr:
        return fn("replaceAll", text, old, new)

    def contains(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return exp.GT(this=fn("position", text, part), expression=lit(0))

    def starts_with(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return fn("startsWith", text, part)

    def ends_with(self, text: exp.Expr, part: exp.Expr) -> exp.Expr:
        return fn("endsWith", text, part)

    def regex_match(self, text: exp.Expr, pattern: exp.Expr) -> exp.Expr:
        return fn("match", text, pattern)

    def regex_extract(self, text: exp.Expr, pattern: exp.Expr, group: int) -> exp.Expr:
        return fn("regexpExtract", text, pattern, lit(group))

    def regex_replace(self, text: exp.Expr, pattern: exp.Expr, replacement: exp.Expr) -> exp.Expr:
        return fn("replaceRegexpAll", text, pattern, replacement)

    def strftime(self, ts: exp.Expr, fmt: str) -> exp.Expr:
        return fn("formatDateTimeInJodaSyntax", ts, lit(_joda(fmt)))

    def round(self, value: exp.Expr, digits: exp.Expr) -> exp.Expr:
        # ClickHouse's round() breaks ties to even; KQL rounds them away from zero
        scale = fn("pow", lit(10.0), digits)
        scaled = fn("floor", exp.Add(this=exp.Mul(this=fn("abs", value), expression=scale), expression=lit(0.5)))
        return exp.Div(this=exp.Mul(this=fn("sign", value.copy()), expression=scaled), expression=scale.copy())

    def hash(self, value: exp.Expr) -> exp.Expr:
        return fn("toInt64", exp.Mod(this=fn("cityHash64", value), expression=lit(9223372036854775807)))

    # ------------------------------------------------------------ datetimes
    def time_bucket(self, micros: float, ts: exp.Expr) -> exp.Expr:
        width = lit(int(micros))
        floored = exp.Mul(this=fn("intDiv", self.epoch_micros(ts), width), expression=width.copy())
        return fn("fromUnixTimestamp64Micro", floored, lit("UTC"))

    def date_trunc(self, unit: str, ts: exp.Expr) -> exp.Expr:
        return fn("toDateTime64", fn(_CH_START_OF[unit], ts), lit(6), lit("UTC"))

    def day_of_week(self, ts: exp.Expr) -> exp.Expr:
        return exp.Mod(this=fn("toDayOfWeek", ts), expression=lit(7))

    def date_diff(self, unit: str, start: exp.Expr, end: exp.Expr) -> exp.Expr:
        return fn("dateDiff", lit(unit), start, end)

    def date_add(self, unit: str, amount: exp.Expr, ts: exp.Expr) -> exp.Expr:
        return fn("add" + _CH_TIME_UNITS[unit], ts, fn("toInt64", amount))

    # ------------------------------------------------------------ aggregates
    @staticmethod
    def _level(percent: float) -> exp.Expr:
        # quantileExact(level) is the element at index floor(level * n) of the sorted values; just
        # under percent / 100 that is ceil(n * percent / 100) - 1, the nearest rank KQL answers
        return lit(max(percent / 100.0 - 1e-9, 0.0))

    def percentile(self, value: exp.Expr, percent: float) -> exp.Expr:
        return exp.ParameterizedAgg(this="quantileExact", expressions=[self._level(percent)], params=[value])

    def percentiles(self, value: exp.Expr, percents: list[float]) -> list[exp.Expr]:
        # one aggregate for all of them (one sort per group), each column reads its element
        agg = exp.ParameterizedAgg(this="quantilesExact", expressions=[self._level(p) for p in percents],
                                   params=[value])
        return [fn("arrayElement", agg.copy(), lit(i + 1)) for i in range(len(percents))]

    def collect(self, value: exp.Expr, distinct: bool) -> exp.Expr:
        return self.to_json(fn("groupUniqArray" if distinct else "groupArray", value))

    def arg_extreme(self, value: exp.Expr, by: exp.Expr, largest: bool) -> exp.Expr:
        # a tuple is never null, so the row's value is kept even when it is null, as KQL does
        picked = fn("argMax" if largest else "argMin", fn("tuple", value), by)
        return fn("tupleElement", picked, lit(1))

    def any_value(self, value: exp.Expr) -> exp.Expr:
        return fn("any", value)


DIALECTS: dict[str, type[Dialect]] = {"duckdb": Dialect, "clickhouse": ClickHouseDialect}
