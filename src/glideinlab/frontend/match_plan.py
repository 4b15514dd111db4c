"""What a group's ``match_expr`` reads, split so that each part is evaluated as rarely as possible.

A match expression like ``stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) && TARGET.GLIDEIN_MaxMemMBs
>= MY.RequestMemory`` is a conjunction whose parts each read one job and one entry attribute. Evaluating
each part once per distinct (job values it reads × entry values it reads) needs far fewer ClassAd
evaluations than the whole expression per (job cluster × entry): 300 site lists × 250 sites plus
3 × 3 memory sizes instead of 485 clusters × 750 entry signatures.  :mod:`.matching` combines the parts
with ClassAd's own ``&&`` rules (see :func:`glideinlab.frontend.matching.match_jobs`).

Everything here is conservative: when the text cannot be split safely (a top-level ``||`` or ``?``, a
comment, unbalanced brackets) it stays one part, and a part whose references cannot be known statically
(``eval()``, records or subscripts, ``MY``/``TARGET`` as a whole, the match ad's own names) reads "every
match attribute", which is exactly what the unsplit evaluation does.  The references come from
classad2 (``ClassAd.externalRefs``); the evaluation itself is always classad2's.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import classad2

#: sentinel in a part's reference sets: "may read any attribute of that side"
ANY = "*"
#: names the match ad (MatchClassAd) itself defines: a reference to them is not a job or entry attribute
_MATCH_AD_NAMES = frozenset({
    "my", "target", "other", "parent", "ad", "left", "right", "lctx", "rctx", "symmetricmatch",
    "leftmatchesright", "rightmatchesleft", "leftrankvalue", "rightrankvalue",
})
_LITERAL_WORDS = frozenset({"true", "false", "undefined", "error", "is", "isnt"})
_NAME = r"[A-Za-z_]\w*"
_TARGET_REF = re.compile(rf"^TARGET\s*\.\s*({_NAME})$", re.IGNORECASE)
_JOB_REF = re.compile(rf"^(?:MY\s*\.\s*)?({_NAME})$", re.IGNORECASE)
_MEMBER_CALL = re.compile(r"^stringList(I?)Member\s*\(", re.IGNORECASE)
_EQUALITY = re.compile(r"^(.+?)\s*(==|=\?=)\s*(.+)$", re.DOTALL)
_DYNAMIC_CALL = re.compile(r"\w*eval\w*\s*\(", re.IGNORECASE)


@dataclass(frozen=True)
class Membership:
    """A part that can only be true if the entry's string occurs inside the job's string as a whole word.

    ``stringListMember(TARGET.<entry_attr>, MY.<job_attr>)`` (also ``stringListIMember``, a bare job
    attribute, ``MY.<job_attr> ?: <anything>``) and ``TARGET.<entry_attr> == MY.<job_attr>`` (or ``=?=``):
    with both values strings each of these is true or false, never undefined or error, and true only if
    the entry value equals a list item (or the whole job value), i.e. occurs in the job value with a
    delimiter (comma, space) or an end of the text on each side.  We check the weaker "occurs, case
    folded (ASCII), with no letter, digit or underscore on either side", so no true match is ever
    skipped; the entries that pass are still evaluated by classad2, only the others are known false.
    """

    entry_attr: str
    job_attr: str


@dataclass(frozen=True)
class Part:
    """One top-level ``&&`` operand of the match expression."""

    text: str
    expr: classad2.ExprTree
    job_refs: frozenset[str]  # lower-cased job attribute names it may read, or {ANY}
    entry_refs: frozenset[str]  # lower-cased entry attribute names it may read, or {ANY}
    membership: Membership | None = None

    @property
    def reads_only_requests(self) -> bool:
        """True for a size condition: every job attribute it reads is a ``Request*`` (memory, disk, ...)."""
        return bool(self.job_refs) and ANY not in self.job_refs and ANY not in self.entry_refs and all(
            name.startswith("request") for name in self.job_refs)


@dataclass(frozen=True)
class MatchPlan:
    text: str
    expr: classad2.ExprTree
    parts: tuple[Part, ...]


@functools.lru_cache(maxsize=64)
def plan_match(text: str) -> MatchPlan:
    """The plan for one match expression (cached: a group's expression rarely changes)."""
    expr = classad2.ExprTree(text)
    pieces = split_conjuncts(text)
    if pieces is None or len(pieces) < 2:
        return MatchPlan(text, expr, (_part(text, expr),))
    parts = []
    for piece in pieces:
        try:
            piece_expr = classad2.ExprTree(piece)
        except Exception:  # a split that does not parse: evaluate the expression whole
            return MatchPlan(text, expr, (_part(text, expr),))
        parts.append(_part(piece, piece_expr))
    return MatchPlan(text, expr, tuple(parts))


def split_conjuncts(text: str) -> list[str] | None:
    """The operands of the top-level ``&&`` chain, or None when splitting might change the meaning.

    ``&&`` binds tighter than only ``||`` and ``?:`` in the ClassAd grammar, so a text with neither at the
    top level is exactly the left-to-right conjunction of the pieces between its top-level ``&&``.
    """
    pieces: list[str] = []
    depth = start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            i = _skip_quoted(text, i)
            if i < 0:
                return None
            continue
        if c == "/" and text[i + 1:i + 2] in ("/", "*"):
            return None  # a comment could hide anything from this scanner
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0:
            if text.startswith("&&", i):
                pieces.append(text[start:i])
                i += 2
                start = i
                continue
            if text.startswith("||", i) or c == "?":
                return None
            if text.startswith(("=?=", "=!="), i):
                i += 3
                continue
        i += 1
    if depth:
        return None
    pieces.append(text[start:])
    pieces = [p.strip() for p in pieces]
    return pieces if all(pieces) else None


def _skip_quoted(text: str, i: int) -> int:
    """Index after the string literal or quoted name starting at ``i``; -1 if it never ends."""
    quote, j, n = text[i], i + 1, len(text)
    while j < n:
        if text[j] == "\\":
            j += 2
        elif text[j] == quote:
            return j + 1
        else:
            j += 1
    return -1


def _top_level(text: str) -> list[tuple[int, str]]:
    """(index, char) of the characters of ``text`` outside quotes and brackets; [(-1, "")] if a quote
    never ends."""
    out = []
    depth = i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_quoted(text, i)
            if i < 0:
                return [(-1, "")]
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            out.append((i, c))
        i += 1
    return out


def _unwrap(text: str) -> str:
    """``((x))`` → ``x``: strip parentheses that enclose the whole text (not those of ``(a) && (b)``)."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for index, c in enumerate(_code_chars(text)):
            depth += (c == "(") - (c == ")")
            if depth == 0 and index < len(text) - 1:
                return text  # the first parenthesis closes before the end
        text = text[1:-1].strip()
    return text


def _code_chars(text: str) -> str:
    """``text`` with every quoted span blanked, so brackets inside strings do not count."""
    out, i = [], 0
    while i < len(text):
        if text[i] in "\"'":
            j = _skip_quoted(text, i)
            if j < 0:
                return "(("  # an unterminated string: unbalanced on purpose, nothing is unwrapped
            out.append(" " * (j - i))
            i = j
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _part(text: str, expr: classad2.ExprTree) -> Part:
    job_refs, entry_refs = references(text, expr)
    return Part(text, expr, job_refs, entry_refs, _membership(_unwrap(text)))


def references(text: str, expr: classad2.ExprTree) -> tuple[frozenset[str], frozenset[str]]:
    """(job attributes, entry attributes) an expression may read, lower-cased; {ANY} when not knowable.

    A bare name counts for both sides: in a match, a name the job ad lacks is looked up in the entry ad.
    """
    everything = frozenset({ANY})
    code = _code_chars(text)
    if "[" in code or _DYNAMIC_CALL.search(code):
        return everything, everything
    job: set[str] = set()
    entry: set[str] = set()
    for ref in classad2.ClassAd().externalRefs(expr):
        if not ref or "'" in ref or '"' in ref:
            return everything, everything
        head, _, rest = ref.partition(".")
        head_l = head.strip().lower()
        if head_l == "target":
            if not rest:
                return everything, everything
            entry.add(rest.partition(".")[0].strip().lower())
        elif head_l == "my":  # classad2 reports MY.x as x; kept in case another version does not
            if not rest:
                return everything, everything
            job.add(rest.partition(".")[0].strip().lower())
        elif head_l in _MATCH_AD_NAMES:
            return everything, everything
        else:
            job.add(head_l)
            entry.add(head_l)
    return frozenset(job), frozenset(entry)


def _membership(text: str) -> Membership | None:
    call = _MEMBER_CALL.match(text)
    if call and text.endswith(")"):
        if not _balanced(text[call.end():-1]):
            return None  # "f(a) + g(b)": the call's parenthesis does not close at the end
        args = _split_args(text[call.end():-1])
        if args is None or len(args) != 2:
            return None
        target = _TARGET_REF.match(args[0])
        job_attr = _job_string(args[1])
        if target and job_attr:
            return Membership(target.group(1).lower(), job_attr)
        return None
    equality = _EQUALITY.match(text)
    if not equality:
        return None
    left, right = equality.group(1).strip(), equality.group(3).strip()
    for entry_side, job_side in ((left, right), (right, left)):
        target = _TARGET_REF.match(entry_side)
        job = _JOB_REF.match(job_side)
        if target and job and job.group(1).lower() not in _MATCH_AD_NAMES | _LITERAL_WORDS:
            return Membership(target.group(1).lower(), job.group(1).lower())
    return None


def _job_string(arg: str) -> str | None:
    """The job attribute of ``MY.x``, ``x`` or ``MY.x ?: <anything without a top-level ?>``."""
    head, sep, rest = arg.partition("?:")
    if sep:
        if not rest.strip() or any(c == "?" for _, c in _top_level(rest)):
            return None
        if any(c == "?" for _, c in _top_level(head)):
            return None
    job = _JOB_REF.match(head.strip())
    if not job or job.group(1).lower() in _MATCH_AD_NAMES | _LITERAL_WORDS:
        return None
    return job.group(1).lower()


def _balanced(text: str) -> bool:
    depth = 0
    for c in _code_chars(text):
        depth += (c in "([{") - (c in ")]}")
        if depth < 0:
            return False
    return depth == 0


def _split_args(text: str) -> list[str] | None:
    args, start = [], 0
    top = _top_level(text)
    if top and top[0][0] < 0:
        return None
    for index, c in top:
        if c == ",":
            args.append(text[start:index].strip())
            start = index + 1
    args.append(text[start:].strip())
    return args if all(args) else None
