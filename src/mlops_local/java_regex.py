"""botocore's patterns are Java regexes, matched against the whole value (Java's `matches()`):
`java_regex` translates what Python's `re` cannot take, `compiled` caches the result."""
from __future__ import annotations

import functools
import re
import sys
import unicodedata


class UnsupportedPattern(ValueError):
    """A Java regex construct this translation does not handle (the check is skipped, not guessed)."""


JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"  # Java's `.` stops at every line terminator, Python's at \n only
POSIX = {"Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
         "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~", "Blank": " \\t",
         "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F", "Space": " \\t\\n\\x0b\\f\\r"}
QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")


@functools.lru_cache(maxsize=None)
def _categories() -> dict[str, str]:
    """Unicode general categories as class bodies, one pass over every code point (once per process)."""
    ranges: dict[str, list[list[int]]] = {}
    for code in range(sys.maxunicode + 1):
        spans = ranges.setdefault(unicodedata.category(chr(code)), [])
        if spans and spans[-1][1] == code - 1:
            spans[-1][1] = code
        else:
            spans.append([code, code])
    bodies = {name: "".join(_span(a, b) for a, b in spans) for name, spans in ranges.items()}
    for major in {name[0] for name in ranges}:
        bodies[major] = "".join(body for name, body in bodies.items() if len(name) == 2 and name[0] == major)
    return bodies


def _span(low: int, high: int) -> str:
    return f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}"


def _property(name: str) -> str:
    if name in POSIX:
        return POSIX[name]
    category = name[2:] if name.startswith("Is") and len(name) in (3, 4) else name
    bodies = _categories()
    if category not in bodies:
        raise UnsupportedPattern(f"\\p{{{name}}}")
    return bodies[category]


def java_regex(pattern: str) -> str:
    """A Python `re` pattern (used with re.ASCII: Java's \\w \\d \\s are ASCII) matching as Java's does."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt in ("p", "P"):
                if pattern[i + 2:i + 3] == "{":
                    end = pattern.index("}", i)
                    name, i = pattern[i + 3:end], end + 1
                else:
                    name, i = pattern[i + 2:i + 3], i + 3
                body = _property(name)
                if in_class and nxt == "P":
                    raise UnsupportedPattern("\\P{...} inside a character class")
                out.append(body if in_class else f"[{'^' if nxt == 'P' else ''}{body}]")
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", pattern[i + 2:i + 6]):
                code = int(pattern[i + 2:i + 6], 16)
                low = re.match(r"\\u([dD][c-fC-F][0-9a-fA-F]{2})", pattern[i + 6:i + 12])
                if 0xD800 <= code <= 0xDBFF and low:  # a surrogate pair in the pattern is one code point in Java
                    point = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(1), 16) - 0xDC00)
                    out.append(f"\\U{point:08x}")
                    i += 12
                else:
                    out.append(pattern[i:i + 6])
                    i += 6
                continue
            if in_class and nxt in "wsdWSD" and pattern[i + 2:i + 3] == "-" and pattern[i + 3:i + 4] != "]":
                out.append(f"\\{nxt}\\-")  # Java reads [\w-_] as \w, '-', '_'; Python calls it a bad range
                i += 3
                continue
            if nxt == "z":
                out.append("\\Z")
            elif nxt in ("Z", "h", "H", "v", "V", "R", "X", "G", "Q", "E", "k", "K", "b", "B") and nxt:
                if nxt in ("b", "B"):
                    out.append("\\" + nxt)
                else:
                    raise UnsupportedPattern(f"\\{nxt}")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            if in_class:
                raise UnsupportedPattern("nested character class")
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        elif c == "&" and in_class and pattern[i + 1:i + 2] == "&":
            raise UnsupportedPattern("class intersection &&")
        elif c == "." and not in_class:
            out.append(JAVA_DOT)
        elif c == "$" and not in_class and QUANTIFIER.match(pattern, i + 1):
            out.append("(?:$)")  # Java takes a quantified anchor ("...)${1,128}"); Python needs a group
        else:
            out.append(c)
        i += 1
    # Possessive quantifiers (*+ ++ ?+ {n}+) and atomic groups are native since Python 3.11.
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def compiled(pattern: str) -> re.Pattern | None:
    """The pattern compiled once per process; None when it cannot be translated faithfully."""
    try:
        return re.compile(java_regex(pattern), re.ASCII)
    except (UnsupportedPattern, re.error):
        return None
