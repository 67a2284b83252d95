"""What differs between SQL engines, in one place: DuckDB now, ClickHouse next.

The compiler builds portable sqlglot expressions wherever sqlglot has one (``exp.Lower``,
``exp.Coalesce``, ``exp.IntDiv``...) and lets sqlglot print them for the dialect. Everything that has
no portable node (JSON access, time buckets, quantiles, regular expressions, hashing, arrays) goes
through a :class:`Dialect` method, so a ClickHouse port is a subclass of this class, not an edit of the
compiler.
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
                              exp.LTE(this=at.copy(), expression=fn("len", values.copy())))
            element = exp.Coalesce(this=fn("list_extract", values.copy(), at), expressions=[lit(0.0)])
            terms.append(exp.Mul(this=lit(float(weight)), expression=exp.Case(ifs=[exp.If(this=inside, true=element)],
                                                                              default=lit(0.0))))
        total = terms[0]
        for term in terms[1:]:
            total = exp.Add(this=total, expression=term)
        if divisor != 1:
            total = exp.Div(this=exp.Paren(this=total), expression=lit(float(divisor)))
        return self.to_json(fn("list_transform", fn("range", fn("len", values.copy())),
                               exp.Lambda(this=total, expressions=[i])))

    def split(self, text: exp.Expr, delimiter: exp.Expr) -> exp.Expr:
        return self.to_json(fn("string_split", text, delimiter))

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


DIALECTS: dict[str, type[Dialect]] = {"duckdb": Dialect}
