"""KQL tokens and the tokenizer: query text to a list of :class:`Token` with their positions.

KQL keywords are contextual (``where`` is also a fine column name), so words are ``IDENT`` tokens and
the parser decides. A few shapes are joined here because whitespace matters to them: hyphenated
operators (``project-away``, ``mv-expand``), negated string operators (``!contains``), ``in~``,
timespan literals (``5m``) and the raw bodies of ``datetime(...)``, ``timespan(...)`` and
``dynamic(...)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from scorewatch.kql.errors import KqlError


class TokenType(Enum):
    IDENT = auto()
    STRING = auto()
    LONG = auto()
    REAL = auto()
    TIMESPAN = auto()
    DATETIME = auto()   # body of datetime(...)
    DYNAMIC = auto()    # body of dynamic(...)
    PIPE = auto()
    COMMA = auto()
    SEMICOLON = auto()
    COLON = auto()
    DOT = auto()
    LPAREN = auto()
    RPAREN = auto()
    LBRACKET = auto()
    RBRACKET = auto()
    LBRACE = auto()
    RBRACE = auto()
    ASSIGN = auto()     # =
    EQ = auto()         # ==
    NEQ = auto()        # != or <>
    EQ_CI = auto()      # =~
    NEQ_CI = auto()     # !~
    LT = auto()
    LE = auto()
    GT = auto()
    GE = auto()
    PLUS = auto()
    MINUS = auto()
    STAR = auto()
    SLASH = auto()
    PERCENT = auto()
    DOTDOT = auto()
    EOF = auto()


@dataclass(frozen=True)
class Token:
    type: TokenType
    text: str     # the value: unquoted string, identifier, number text, literal body
    pos: int      # offset in the query
    length: int   # characters of source text the token spans

    def is_word(self, *words: str) -> bool:
        return self.type is TokenType.IDENT and self.text in words


# Hyphenated operators, written without spaces around the hyphen.
HYPHENATED = ("project-away", "project-rename", "project-reorder", "project-keep", "mv-expand",
              "order-by", "make-series", "mv-apply", "sample-distinct", "top-nested", "top-hitters",
              "parse-where", "parse-kv", "make-graph", "graph-match", "project-smart")
# Timespan units, longest first so "ms" wins over "m".
TIMESPAN_UNITS = {"microseconds": 1, "microsecond": 1, "milliseconds": 1000, "millisecond": 1000,
                  "seconds": 1_000_000, "second": 1_000_000, "minutes": 60_000_000, "minute": 60_000_000,
                  "hours": 3_600_000_000, "hour": 3_600_000_000, "days": 86_400_000_000, "day": 86_400_000_000,
                  "ms": 1000, "min": 60_000_000, "sec": 1_000_000, "tick": 0.1, "ticks": 0.1,
                  "d": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000}

_PUNCT = [("==", TokenType.EQ), ("!=", TokenType.NEQ), ("<>", TokenType.NEQ), ("=~", TokenType.EQ_CI),
          ("!~", TokenType.NEQ_CI), ("<=", TokenType.LE), (">=", TokenType.GE), ("..", TokenType.DOTDOT),
          ("|", TokenType.PIPE), (",", TokenType.COMMA), (";", TokenType.SEMICOLON),
          (":", TokenType.COLON), (".", TokenType.DOT), ("(", TokenType.LPAREN), (")", TokenType.RPAREN),
          ("[", TokenType.LBRACKET), ("]", TokenType.RBRACKET), ("{", TokenType.LBRACE),
          ("}", TokenType.RBRACE), ("=", TokenType.ASSIGN), ("<", TokenType.LT), (">", TokenType.GT),
          ("+", TokenType.PLUS), ("-", TokenType.MINUS), ("*", TokenType.STAR), ("/", TokenType.SLASH),
          ("%", TokenType.PERCENT)]
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_DIGITS = frozenset("0123456789")
_UNIT = re.compile("|".join(sorted(TIMESPAN_UNITS, key=len, reverse=True)) + r"(?![A-Za-z0-9_])")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_RAW_BODY = {"datetime": TokenType.DATETIME, "dynamic": TokenType.DYNAMIC, "timespan": TokenType.TIMESPAN,
             "time": TokenType.TIMESPAN}


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``EOF`` token; raises :class:`KqlError` on bad text."""
    tokens: list[Token] = []
    i, n = 0, len(query)
    bad = _SURROGATE.search(query)
    if bad:  # text no engine can take (it came from undecodable bytes)
        raise KqlError.at("the query holds a lone surrogate: it is not valid Unicode text", query, bad.start(),
                          kind="SyntaxError")
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        if query.startswith("//", i):
            end = query.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "\"'" or (ch in "@hH" and i + 1 < n and query[i + 1] in "\"'"):
            tokens.append(_string(query, i))
            i += tokens[-1].length
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and query[i + 1] in _DIGITS):
            number = _NUMBER.match(query, i)
            assert number is not None
            end = number.end()
            unit = _UNIT.match(query, end)
            if unit:
                micros = float(number.group()) * TIMESPAN_UNITS[unit.group()]
                tokens.append(Token(TokenType.TIMESPAN, repr(micros), i, unit.end() - i))
                i = unit.end()
                continue
            if end < n and (query[end].isalpha() or query[end] == "_"):
                bad = re.compile(r"[A-Za-z0-9_]*").match(query, end)
                assert bad is not None
                raise KqlError.at(f"unknown timespan unit {query[end:bad.end()]!r}", query, end,
                                  bad.end() - end, kind="SyntaxError")
            text = number.group()
            kind = TokenType.LONG if text.isdigit() else TokenType.REAL
            tokens.append(Token(kind, text, i, end - i))
            i = end
            continue
        word = _WORD.match(query, i)
        if word:
            end = word.end()
            text = word.group()
            for hyphenated in HYPHENATED:
                if query.startswith(hyphenated, i) and not _is_word_char(query, i + len(hyphenated)):
                    text, end = hyphenated, i + len(hyphenated)
                    break
            if text == "in" and query.startswith("~", end):
                text, end = "in~", end + 1
            if text in _RAW_BODY and _next_non_space(query, end) == "(":
                tokens.append(_raw_body(query, i, query.index("(", end), _RAW_BODY[text]))
                i += tokens[-1].length
                continue
            tokens.append(Token(TokenType.IDENT, text, i, end - i))
            i = end
            continue
        if ch == "!" and (word := _WORD.match(query, i + 1)) is not None:
            text, end = "!" + word.group(), word.end()
            if text == "!in" and query.startswith("~", end):
                text, end = "!in~", end + 1
            tokens.append(Token(TokenType.IDENT, text, i, end - i))
            i = end
            continue
        for punct, kind in _PUNCT:
            if query.startswith(punct, i):
                tokens.append(Token(kind, punct, i, len(punct)))
                i += len(punct)
                break
        else:
            raise KqlError.at(f"unexpected character {ch!r}", query, i, kind="SyntaxError")
    tokens.append(Token(TokenType.EOF, "", n, 1))
    return tokens


def _is_word_char(query: str, i: int) -> bool:
    return i < len(query) and (query[i].isalnum() or query[i] == "_")


def _next_non_space(query: str, i: int) -> str:
    while i < len(query) and query[i].isspace():
        i += 1
    return query[i] if i < len(query) else ""


def _string(query: str, start: int) -> Token:
    i = start
    verbatim = query[i] == "@"
    if query[i] in "@hH":
        i += 1
    quote = query[i]
    i += 1
    out: list[str] = []
    while i < len(query):
        ch = query[i]
        if ch == quote:
            if verbatim and query.startswith(quote * 2, i):
                out.append(quote)
                i += 2
                continue
            return Token(TokenType.STRING, "".join(out), start, i + 1 - start)
        if ch == "\\" and not verbatim and i + 1 < len(query):
            nxt = query[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", query[i + 2:i + 6]):
                code = int(query[i + 2:i + 6], 16)
                low = query[i + 8:i + 12] if query.startswith("\\u", i + 6) else ""
                if 0xD800 <= code < 0xDC00 and re.fullmatch(r"[dD][c-fC-F][0-9a-fA-F]{2}", low):
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)))  # a pair
                    i += 12
                    continue
                if 0xD800 <= code < 0xE000:
                    raise KqlError.at("a lone surrogate escape is not a character", query, i, 6, kind="SyntaxError")
                out.append(chr(code))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    raise KqlError.at("unterminated string literal", query, start, max(1, i - start), kind="SyntaxError")


def _raw_body(query: str, start: int, lparen: int, kind: TokenType) -> Token:
    """``datetime(2024-01-01 10:00)``: everything to the matching parenthesis, as one token."""
    depth, i = 0, lparen
    quote = ""
    while i < len(query):
        ch = query[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                body = query[lparen + 1:i].strip()
                if kind is TokenType.TIMESPAN:
                    micros = timespan_micros(body)
                    if micros is None:
                        raise KqlError.at(f"invalid timespan {body!r}", query, start, i + 1 - start,
                                          kind="SyntaxError")
                    body = repr(micros)
                return Token(kind, body, start, i + 1 - start)
        i += 1
    raise KqlError.at("missing closing ')'", query, start, lparen + 1 - start, kind="SyntaxError")


_CLOCK = re.compile(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?", re.ASCII)


def timespan_micros(text: str) -> float | None:
    """Microseconds in a timespan written ``5m``, ``1.5h`` or ``[d.]hh:mm[:ss[.fffffff]]``; None if invalid."""
    text = text.strip()
    number = _NUMBER.match(text)
    if number:
        unit = _UNIT.fullmatch(text, number.end())
        if unit:
            return float(number.group()) * TIMESPAN_UNITS[unit.group()]
    clock = _CLOCK.fullmatch(text)
    if not clock:
        return None
    sign, days, hours, minutes, seconds, fraction = clock.groups()
    total = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds or 0)
    micros = total * 1_000_000 + round(float(fraction or 0) * 1_000_000)
    return float(-micros if sign else micros)
