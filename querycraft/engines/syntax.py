"""Reading SQL text exactly as the server reads it: comments, whitespace, quotes and escapes.

The allow-list parses generated SQL with sqlglot; the server parses it with its own lexer.
Where the two readings differ, the allow-list checks other code than the server runs: on
MariaDB, ``--`` followed by a no-break space (U+00A0) is a comment to Python's Unicode-aware
readers and to sqlglot, but code to the server, which takes ``--`` as a comment only before
ASCII whitespace or a control character, so ``SELECT 1 --<U+00A0>x, LOAD_FILE(...)`` passed
every check (issue 30). Each engine therefore describes its lexical rules as data
(:class:`Syntax`), and :func:`read_statement` reads a statement by them and rebuilds it as the
server's code alone:

* comments are dropped (each becomes one space), so a comment can hide code from neither the
  parser nor the server: what is checked is what is sent;
* between tokens only the ASCII whitespace every reader agrees on may appear; any other
  character outside string literals and quoted names (U+00A0, U+3000, U+2028, a control
  character) is refused, except letters in unquoted names where the server reads every
  non-ASCII character as part of a name;
* where the server's reading depends on a setting QueryCraft does not control (MySQL's
  ``NO_BACKSLASH_ESCAPES`` and ``ANSI_QUOTES``, PostgreSQL's ``standard_conforming_strings``)
  the text is read under every setting and refused unless all readings agree; executable
  comments (``/*! */``, ``/*M! */``, optimizer hints ``/*+ */``) are refused, never read;
* where the rules are not known for sure (nested block comments on Db2, a bare carriage
  return inside a line comment, which ends it on PostgreSQL but not on MySQL) the statement
  is refused.

:func:`parser_disagreement` then checks that sqlglot's own tokenizer finds the same string
literals and quoted names in the rebuilt text and no comment; the allow-list refuses the
statement otherwise. ``tests/test_server_reading.py`` compares this reading with the real
servers' on thousands of generated statements.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import product

__all__ = ["Quote", "Reading", "SqlNotReadable", "Syntax", "parser_disagreement",
           "read_statement"]


class SqlNotReadable(ValueError):
    """The statement cannot be read the same way by the server and by QueryCraft; the message
    says why and what to write instead. ``syntax`` is True when the text is simply unfinished
    (a string or comment never closed: what a model cut off at its token limit writes)."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


@dataclass(frozen=True)
class Quote:
    """One way to quote a string literal or a name.

    Attributes:
        opener: The opening character(s) (``'``, ``"``, a backquote, ``[``).
        closer: The closing character.
        backslash: The readings the server may take, one per setting it depends on: True
            where ``\\`` escapes the next character, False where it is an ordinary one
            (MySQL: (True, False), from ``NO_BACKSLASH_ESCAPES``).
        doubled: A doubled closer stays inside (``'it''s'``).
        prefix: A word that, written directly before the opener at the start of a token,
            selects these rules (PostgreSQL ``E'...'``: backslash escapes); lower case.
        name: True for a quoted name, False for a string literal (for messages).
    """

    opener: str
    closer: str
    backslash: tuple[bool, ...] = (False,)
    doubled: bool = True
    prefix: str = ""
    name: bool = False


@dataclass(frozen=True)
class Syntax:
    """An engine's lexical rules, as far as they decide what is code.

    Attributes:
        server: How messages name the server ("MariaDB/MySQL").
        quotes: Its quoting rules; prefixed ones (``prefix``) are tried first.
        line_comments: What opens a comment to the end of the line.
        dash_comment_needs_space: ``--`` opens a comment only before whitespace or a control
            character (MySQL); elsewhere it is two minus signs, which the parser would read as
            a comment, so it is refused.
        nested_comments: True where ``/* /* */ */`` nests (PostgreSQL), False where the first
            ``*/`` ends it (SQLite, MySQL), None where it is not known (Db2): a ``/*`` inside
            a block comment is then refused.
        refused_comments: Comment openers the server reads as code, each with the reason.
        whitespace: The characters allowed between tokens (the server's whitespace that every
            reader agrees on).
        unicode_names: The server reads every non-ASCII character outside quotes as part of a
            name (SQLite, PostgreSQL, MySQL): letters and marks are allowed in unquoted names.
        dollar_quotes: PostgreSQL's ``$tag$ ... $tag$`` strings.
        name_chars: Characters besides ASCII letters, digits and ``_`` that continue a name.
    """

    server: str
    quotes: tuple[Quote, ...]
    line_comments: tuple[str, ...] = ("--",)
    dash_comment_needs_space: bool = False
    nested_comments: bool | None = False
    refused_comments: Mapping[str, str] = field(default_factory=dict)
    whitespace: str = " \t\n\r\f"
    unicode_names: bool = True
    dollar_quotes: bool = False
    name_chars: str = "$"


@dataclass(frozen=True)
class Reading:
    """A statement as the server reads it.

    Attributes:
        statement: The code: comments replaced by one space each, surrounding whitespace and a
            final ``;`` removed. This is what the allow-list parses and the server receives.
        code: ``statement`` with every string literal and quoted name blanked out (same
            length), for checks that must look at code only.
        quoted_ends: Where each string literal and quoted name of ``statement`` ends (the
            index of its closing character), for :func:`parser_disagreement`.
    """

    statement: str
    code: str
    quoted_ends: tuple[int, ...]


# Characters that some reader (Python's str.splitlines, a Unicode-aware tokenizer) takes as a
# line break; inside a line comment only '\n' (and '\r' directly before it) is allowed to end
# it, so no reader can end the comment earlier than the server.
# What ends a line comment, or must not appear in one: a control character other than a
# tab (line feed, carriage return, vertical tab, form feed, the file/group/record separators,
# NUL...), DEL, NEL and the Unicode line and paragraph separators.
_LINE_STOP = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PARAMETER = re.compile(r"\$\d+")


def _describe(char: str) -> str:
    """``'x'`` for a printable ASCII character, else its code point and Unicode name."""
    if " " < char < "\x7f":
        return repr(char)
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else " (a control character)")


@dataclass
class _Token:
    kind: str  # "ws", "comment", "quoted", "code"
    start: int
    end: int  # exclusive


class _Reader:
    """One reading of the text under one choice of the settings (``escapes``: per quote, whether
    a backslash escapes)."""

    def __init__(self, sql: str, syntax: Syntax, escapes: tuple[bool, ...]) -> None:
        self.sql = sql
        self.syntax = syntax
        self.escapes = dict(zip(syntax.quotes, escapes, strict=True))
        self.prefixed = [q for q in syntax.quotes if q.prefix]
        self.plain = {q.opener: q for q in syntax.quotes if not q.prefix}
        # re caches compiled patterns by their text: building them per reading costs a lookup.
        self.spaces = re.compile("[" + re.escape(syntax.whitespace) + "]+")
        self.name = re.compile("[A-Za-z0-9_" + re.escape(syntax.name_chars)
                               + "\u0080-\U0010ffff]+")
        self.comment_starts = {opener[0] for opener in (*syntax.refused_comments,
                                                        *syntax.line_comments, "/*")}

    def tokens(self) -> Iterator[_Token]:
        sql, syntax, n = self.sql, self.syntax, len(self.sql)
        i = 0
        while i < n:
            c = sql[i]
            if c in syntax.whitespace:
                j = self.spaces.match(sql, i).end()
                yield _Token("ws", i, j)
                i = j
                continue
            comment = self._comment_at(i) if c in self.comment_starts else None
            if comment is not None:
                yield comment
                i = comment.end
                continue
            quoted = self._quoted_at(i)
            if quoted is not None:
                yield quoted
                i = quoted.end
                continue
            name = self.name.match(sql, i)
            if name is not None:
                if not name.group().isascii():
                    self._check_name(name.group())
                yield _Token("code", i, name.end())
                i = name.end()
                continue
            if ord(c) < 0x20 or c == "\x7f":
                raise SqlNotReadable(f"a control character {_describe(c)} outside a string: "
                                     f"{syntax.server} and QueryCraft's parser may read it "
                                     "differently; remove it")
            yield _Token("code", i, i + 1)
            i += 1

    def _check_name(self, name: str) -> None:
        """Refuse a non-ASCII character in an unquoted name unless the server reads it as a
        name character and so does every other reader (a letter or a mark)."""
        syntax = self.syntax
        for c in name:
            if ord(c) <= 0x7F:
                continue
            if not syntax.unicode_names:
                raise SqlNotReadable(
                    f"the character {_describe(c)} outside a string or quoted name: how "
                    f"{syntax.server} reads non-ASCII characters there is not known for "
                    "sure, so the query could run other code than was checked; write "
                    "non-ASCII names in double quotes and non-ASCII text in strings")
            if unicodedata.category(c)[0] not in "LM":
                raise SqlNotReadable(
                    f"the character {_describe(c)} outside a string or quoted name: "
                    f"{syntax.server} reads it as part of a name, QueryCraft's parser as "
                    "a space or a symbol, so the query could run other code than was "
                    "checked; write plain ASCII spaces, and other text only inside quotes")

    def _comment_at(self, i: int) -> _Token | None:
        sql, syntax = self.sql, self.syntax
        for opener, why in syntax.refused_comments.items():
            if sql.startswith(opener, i):
                raise SqlNotReadable(f"{opener} ... */ is not a comment to {syntax.server}: {why}")
        for opener in syntax.line_comments:
            if sql.startswith(opener, i):
                after = sql[i + len(opener): i + len(opener) + 1]
                if opener == "--" and syntax.dash_comment_needs_space and after \
                        and after not in " \t\n\r\f":
                    raise SqlNotReadable(
                        f"'--' followed by {_describe(after)}: "
                        f"{syntax.server} starts a comment only at '--' followed by an ASCII "
                        "space or tab (otherwise it is two minus signs), and QueryCraft's "
                        "parser reads a comment either way; write '-- ' or '- -'")
                return self._line_comment(i, len(opener))
        if sql.startswith("/*", i):
            return self._block_comment(i)
        return None

    def _line_comment(self, i: int, width: int) -> _Token:
        sql, n = self.sql, len(self.sql)
        j = i + width
        while True:
            found = _LINE_STOP.search(sql, j)
            if found is None:
                return _Token("comment", i, n)
            j = found.start()
            c = sql[j]
            if c == "\n":
                return _Token("comment", i, j)
            if c == "\r" and j + 1 < n and sql[j + 1] == "\n":
                j += 1
                continue
            raise SqlNotReadable(
                f"a line comment holds {_describe(c)}: readers disagree on whether it ends "
                f"the comment ({self.syntax.server} and QueryCraft's parser could see "
                "different code after it); end comments with a plain newline or drop them")

    def _block_comment(self, i: int) -> _Token:
        sql, syntax = self.sql, self.syntax
        depth, j = 1, i + 2
        while True:
            close = sql.find("*/", j)
            opens = sql.find("/*", j)
            if close < 0:
                raise SqlNotReadable("syntax error: a /* comment is never closed; close it "
                                     "with */", syntax=True)
            if 0 <= opens < close:
                if syntax.nested_comments is None:
                    raise SqlNotReadable(
                        f"a /* inside a /* ... */ comment: whether {syntax.server} nests "
                        "comments is not known for sure here; remove the inner /*")
                if syntax.nested_comments:
                    depth += 1
                    j = opens + 2
                    continue
            if "\x00" in sql[j:close]:
                raise SqlNotReadable("a NUL character inside a comment; remove it")
            depth -= 1
            j = close + 2
            if depth == 0:
                return _Token("comment", i, j)

    def _quoted_at(self, i: int) -> _Token | None:
        sql = self.sql
        for quote in self.prefixed:
            p = len(quote.prefix)
            if sql[i:i + p].lower() == quote.prefix and sql.startswith(quote.opener, i + p):
                return self._quoted(i, i + p, quote)
        quote = self.plain.get(sql[i])
        if quote is not None:
            return self._quoted(i, i, quote)
        if self.syntax.dollar_quotes and sql[i] == "$" and not _PARAMETER.match(sql, i):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag is not None:
                end = sql.find(tag.group(), tag.end())
                if end < 0:
                    raise SqlNotReadable(f"syntax error: a {tag.group()}-quoted string is "
                                         "never closed", syntax=True)
                return _Token("quoted", i, end + len(tag.group()))
        return None

    def _quoted(self, start: int, open_at: int, quote: Quote) -> _Token:
        sql, n = self.sql, len(self.sql)
        escapes = self.escapes[quote]
        stop = re.compile("[" + re.escape(quote.closer + ("\\" if escapes else "")) + "\x00]")
        j = open_at + len(quote.opener)
        while True:
            found = stop.search(sql, j)
            if found is None:
                break
            j = found.start()
            c = sql[j]
            if c == "\x00":
                raise SqlNotReadable("a NUL character inside a string or quoted name; remove it")
            if c == "\\":
                j += 2
                continue
            if quote.doubled and j + 1 < n and sql[j + 1] == quote.closer:
                j += 2
                continue
            return _Token("quoted", start, j + 1)
        what = "quoted name" if quote.name else "string"
        raise SqlNotReadable(f"syntax error: a {what} opened with {quote.opener} is never "
                             "closed", syntax=True)


def _one_reading(sql: str, syntax: Syntax, escapes: tuple[bool, ...]) -> list[_Token]:
    return list(_Reader(sql, syntax, escapes).tokens())


def read_statement(sql: str, syntax: Syntax) -> Reading:
    """The statement as ``syntax``'s server reads it, rebuilt without comments.

    Raises:
        SqlNotReadable: The server and QueryCraft could read it differently (see the module
            docstring), or it holds several statements.
    """
    if "\x00" in sql:
        raise SqlNotReadable("the SQL holds a NUL character; remove it")
    outcomes: list[list[_Token] | SqlNotReadable] = []
    # Without a backslash every setting reads the text the same way: one reading will do.
    choices = (list(product(*(q.backslash for q in syntax.quotes))) if "\\" in sql
               else [tuple(q.backslash[0] for q in syntax.quotes)])
    for choice in choices:
        try:
            outcomes.append(_one_reading(sql, syntax, choice))
        except SqlNotReadable as err:
            outcomes.append(err)
    first = outcomes[0]
    spans = (str(first) if isinstance(first, SqlNotReadable)
             else [(t.kind, t.start, t.end) for t in first])
    for other in outcomes[1:]:
        other_spans = (str(other) if isinstance(other, SqlNotReadable)
                       else [(t.kind, t.start, t.end) for t in other])
        if other_spans != spans:
            raise SqlNotReadable(
                f"a backslash inside a string or quoted name: where it ends depends on "
                f"{syntax.server}'s settings (whether '\\' escapes, and what double quotes "
                "mean), so the server could read code where QueryCraft read a string; write "
                "the string without backslashes before quotes")
    if isinstance(first, SqlNotReadable):
        raise first
    tokens = first
    significant = [t for t in tokens if t.kind not in ("ws", "comment")]
    is_semicolon = [t.kind == "code" and sql[t.start:t.end] == ";" for t in significant]
    if any(is_semicolon):
        first = is_semicolon.index(True)
        if not all(is_semicolon[first:]):
            count = sum(1 for k, semi in enumerate(is_semicolon)
                        if not semi and (k == 0 or is_semicolon[k - 1]))
            raise SqlNotReadable(f"several statements ({count}); only one query may run at a "
                                 "time")
        last = significant[first - 1].end if first else 0
        tokens = [t for t in tokens if t.end <= last]
    pieces: list[str] = []
    code: list[str] = []
    ends: list[int] = []
    length = 0
    for token in tokens:
        text = " " if token.kind == "comment" else sql[token.start:token.end]
        pieces.append(text)
        code.append(" " * len(text) if token.kind == "quoted" else text)
        length += len(text)
        if token.kind == "quoted":
            ends.append(length - 1)
    statement = "".join(pieces)
    stripped = statement.lstrip()
    shift = len(statement) - len(stripped)
    statement = stripped.rstrip()
    code_text = "".join(code)[shift:shift + len(statement)]
    return Reading(statement, code_text, tuple(e - shift for e in ends))


# sqlglot token types that are a quoted literal or name (their text spans the quotes).
def _is_quoted_type(name: str) -> bool:
    return name == "IDENTIFIER" or name.endswith("STRING")


def parser_disagreement(reading: Reading, dialect: str) -> str | None:
    """Why sqlglot's tokenizer reads ``reading.statement`` differently from the server (a
    comment where the server saw none, a string or quoted name that ends elsewhere), or None.

    Unquoted names are VAR tokens to sqlglot and quoted ones IDENTIFIER; strings of every kind
    end in STRING. A tokenizer error is left to the parser, which reports it as a syntax error.
    """
    from sqlglot.errors import SqlglotError

    from querycraft.sql import tokenize_shared

    try:
        tokens = tokenize_shared(reading.statement, dialect)
    except (SqlglotError, ValueError):
        return None
    ends: list[int] = []
    for token in tokens:
        if token.comments:
            return ("QueryCraft's parser reads a comment where the server reads none; write the "
                    "query without comment markers outside strings")
        if _is_quoted_type(token.token_type.name) and reading.statement[token.end] in "'\"`]$":
            ends.append(token.end)
    if tuple(ends) != reading.quoted_ends:
        return ("QueryCraft's parser and the server disagree on where a string or quoted name "
                "ends; write it without backslashes or unusual quoting")
    return None
