"""The optimized matching agrees with the straightforward reference, and its expression plan is sound.

The randomized snapshots mix everything that could make the shortcuts wrong: jobs with and without the
match attrs, values of the wrong type, strings that contain other strings ("Site1" in "Site10"), case
and spacing differences, non-ASCII text, expressions that are undefined or an error, numbers used as
booleans, expressions that cannot be split, and a cache carried over cycles in which entries, the
expression and ``ignore_down_entries`` change.  More seeds: ``GLIDEINLAB_MATCHING_SEEDS=500``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from glideinlab.frontend import matching, matching_reference
from glideinlab.frontend.match_plan import ANY, Membership, plan_match, references, split_conjuncts
from glideinlab.frontend.matching import MatchCache, collect_jobs, match_jobs, read_entry
from glideinlab.frontend.values import SkipLog

SEEDS = range(int(os.environ.get("GLIDEINLAB_MATCHING_SEEDS", "12")))
NOW = 1_000_000
JOB_ATTRS = ("DESIRED_Sites", "RequestMemory", "RequestCpus")
FACTORY_ATTRS = ("GLIDEIN_Site", "GLIDEIN_MaxMemMBs")
SITE_MATCH = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"

EXPRESSIONS = [
    "true",
    "false",
    "undefined",
    SITE_MATCH,
    "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites ?: TARGET.GLIDEIN_Site)",
    "stringListIMember(TARGET.GLIDEIN_Site, DESIRED_Sites)",
    "TARGET.GLIDEIN_Site == MY.DESIRED_Sites",
    "MY.DESIRED_Sites =?= TARGET.GLIDEIN_Site && MY.RequestMemory <= TARGET.GLIDEIN_MaxMemMBs",
    f"{SITE_MATCH} && (TARGET.GLIDEIN_MaxMemMBs =?= undefined || TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory)",
    f"TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory && {SITE_MATCH}",
    f"MY.RequestMemory / 0 > 1 && {SITE_MATCH}",  # the first part is an error everywhere
    f"1 && {SITE_MATCH} && 2.5",  # numbers as booleans
    f"RequestMemory < 2000 || {SITE_MATCH}",  # cannot be split
    f"ifThenElse(MY.DESIRED_Sites is undefined, true, {SITE_MATCH}) && TARGET.GLIDEIN_MaxMemMBs > 3000",
    'eval("TARGET.GLIDEIN_Site") == "Site1" && MY.RequestCpus < 4',  # dynamic reference
    "GLIDEIN_MaxMemMBs > 2000 && RequestCpus >= 1",  # bare names the job lacks resolve in the entry
    '"a && b" != MY.DESIRED_Sites && TARGET.GLIDEIN_Site =!= "Site2"',
    "undefined && false",
    "error && false",
    f"({SITE_MATCH}) && ((MY.RequestMemory ?: 0) < 4000) && TARGET.GLIDEIN_Site isnt undefined",
    f"{SITE_MATCH} && MY.RequestCpus * 1000 <= TARGET.GLIDEIN_MaxMemMBs",
]

SITES = ["Site1", "Site10", "site1", "Site2", "SITE2", "Sit", "Sité1", "", "Site 1", "A,B", 7, 2500.5]
DESIRED = [None, "Site1", "Site1,Site10", "site1 , SITE2", "", "Site10,,Site2", "Sité1,Site2", "Site 1",
           "A,B", "Site2 Site1", "SITE10", "Sit,e", "Site1-x,Site2", "Site1_x", 7, [1, 2], {1, 2}, 1j, b"Site1"]
MEMORY = [None, 1000, 3000, 2500.5, 9000, "x"]


def random_entries(rng: random.Random, n: int) -> list[matching.Entry]:
    ads = []
    for i in range(n):
        ad: dict[str, Any] = {"Name": f"e{i}@g@f", "FactoryCollector": rng.choice(["c1:9618", "c2:9618"]),
                              "GLIDEIN_CPUS": rng.choice([1, 1, 2, 4, 8, "auto", "8"])}
        if rng.random() < 0.9:
            ad["GLIDEIN_Site"] = rng.choice(SITES)
        if rng.random() < 0.7:
            ad["GLIDEIN_MaxMemMBs"] = rng.choice([2000, 2500, 4000, 16000, 2500.5])
        if ad["GLIDEIN_CPUS"] == "auto" and rng.random() < 0.5:
            ad["GLIDEIN_ESTIMATED_CPUS"] = 4
        if rng.random() < 0.15:
            ad["GLIDEIN_In_Downtime"] = True
        ads.append(ad)
    return [read_entry(ad, FACTORY_ATTRS) for ad in ads]


def random_jobs(rng: random.Random, n: int) -> list[dict]:
    jobs = []
    for i in range(n):
        job: dict[str, Any] = {"ClusterId": i, "ProcId": 0, "ScheddName": rng.choice(["s1", "s1", "full"]),
                               "JobStatus": rng.choice([1, 1, 1, 2, 1.0]),
                               "EnteredCurrentStatus": NOW - rng.choice([0, 100, 700, 4000])}
        if rng.random() < 0.5:
            job["ServerTime"] = rng.choice([NOW, NOW, NOW + 0.5])
        if rng.random() < 0.1:
            job["EnteredCurrentStatus"] = rng.choice([None, NOW - 3600.5, "soon"])
        for attr, choices in (("DESIRED_Sites", DESIRED), ("RequestMemory", MEMORY),
                              ("RequestCpus", [None, 1, 1, 2, 4, 1.5])):
            value = rng.choice(choices)
            if value is not None:
                job[attr if rng.random() < 0.9 else attr.lower()] = value  # some spelled in another case
        if rng.random() < 0.03:
            job[rng.choice(["JobStatus", "RequestCpus", "ServerTime"])] = rng.choice(["junk", 0, [1]])
        jobs.append(job)
    return jobs


def snapshot(seed: int) -> tuple[list[dict], list[matching.Entry]]:
    rng = random.Random(seed)
    return random_jobs(rng, rng.randint(0, 60)), random_entries(rng, rng.randint(0, 14))


def both_collect(jobs: list[dict]) -> tuple[matching.JobSets, SkipLog]:
    skipped, skipped_ref = SkipLog("jobs"), SkipLog("jobs")
    sets = collect_jobs(jobs, JOB_ATTRS, NOW, 600, {"full"}, skipped)
    assert sets == matching_reference.collect_jobs(jobs, JOB_ATTRS, NOW, 600, {"full"}, skipped_ref)
    assert skipped == skipped_ref
    return sets, skipped


def assert_same(result: matching.MatchResult, expected: matching.MatchResult) -> None:
    assert result.counts == expected.counts
    assert (result.unmatched.idle, result.unmatched.old_idle, result.unmatched.running) == \
        (expected.unmatched.idle, expected.unmatched.old_idle, expected.unmatched.running)
    assert result.warnings == expected.warnings
    assert sum(r.idle for r in result.unmatched.reasons) == result.unmatched.idle


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_optimized_matching_equals_the_reference(expr):
    for seed in SEEDS:
        jobs, entries = snapshot(seed)
        sets, _ = both_collect(jobs)
        clusters = list(sets.clusters.values())
        for ignore_down in (False, True):
            expected = matching_reference.match_jobs(clusters, entries, expr, ignore_down)
            assert_same(match_jobs(clusters, entries, expr, ignore_down), expected)


def test_cache_over_changing_cycles_equals_the_reference():
    """One cache through cycles where jobs, entries, the expression and ignore_down_entries change."""
    for seed in SEEDS:
        rng = random.Random(1000 + seed)
        cache = MatchCache(max_results=rng.choice([40, 100_000]))  # a small bound forces clearing
        jobs, entries = snapshot(seed)
        expr = rng.choice(EXPRESSIONS)
        for _ in range(6):
            change = rng.choice(["jobs", "entry", "entries", "expr", "same"])
            if change == "jobs":
                jobs = jobs[rng.randint(0, len(jobs)):] + random_jobs(rng, rng.randint(0, 20))
            elif change == "entry" and entries:  # one entry changes a value, the rest stays
                i = rng.randrange(len(entries))
                values = {**entries[i].match_values, "GLIDEIN_Site": rng.choice(SITES)}
                entries[i] = matching.Entry(**{**entries[i].__dict__, "match_values": values})
            elif change == "entries":
                entries = entries[: rng.randint(0, len(entries))] + random_entries(rng, rng.randint(0, 4))
                entries = [matching.Entry(**{**e.__dict__, "glideid": (e.glideid[0], f"x{i}@g@f")})
                           for i, e in enumerate(entries)]
            elif change == "expr":
                expr = rng.choice(EXPRESSIONS)
            ignore_down = rng.random() < 0.3
            clusters = list(both_collect(jobs)[0].clusters.values())
            expected = matching_reference.match_jobs(clusters, entries, expr, ignore_down)
            assert_same(match_jobs(clusters, entries, expr, ignore_down, cache), expected)


def test_cache_reuses_outcomes_next_cycle_and_stays_bounded():
    jobs, entries = snapshot(0)  # 54 jobs, 14 entries
    clusters = list(both_collect(jobs)[0].clusters.values())
    cache = MatchCache()
    first = match_jobs(clusters, entries, EXPRESSIONS[8], False, cache)
    again = match_jobs(clusters, entries, EXPRESSIONS[8], False, cache)
    assert first.evaluations > 0 and again.evaluations == 0
    assert again.counts == first.counts
    # a new expression: the old one's outcomes are dropped, the new ones evaluated
    other = match_jobs(clusters, entries, EXPRESSIONS[9], False, cache)
    assert other.evaluations > 0 and all(key[0] != EXPRESSIONS[8] for key in cache.results)
    tiny = MatchCache(max_results=1)
    match_jobs(clusters, entries, EXPRESSIONS[8], False, tiny)
    assert tiny.size == 0 and not tiny.results


# ------------------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("a && b", ["a", "b"]),
        ("(a && b) && c", ["(a && b)", "c"]),
        ("a && b || c", None),  # || binds looser: not a conjunction at the top
        ("a ? b : c && d", None),
        ("a ?: b && c", None),
        ("x =?= y && z =!= w", ["x =?= y", "z =!= w"]),
        ('"&&" == a && b', ['"&&" == a', "b"]),
        ("'odd&&name' && b", ["'odd&&name'", "b"]),
        ('"esc \\" && " == a && b', ['"esc \\" && " == a', "b"]),
        ("f(a && b, c) && {1, 2}[0]", ["f(a && b, c)", "{1, 2}[0]"]),
        ("a && // comment\n b", None),
        ("a && /* c */ b", None),
        ("a && (b", None),
        ("a && ", None),
        ("single", ["single"]),
    ],
)
def test_split_conjuncts(text, pieces):
    assert split_conjuncts(text) == pieces


@pytest.mark.parametrize(
    "text, job, entry",
    [
        # classad2 reports MY.x like a bare x, which a match also looks up in the entry: both sides
        ("stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)", {"desired_sites"},
         {"glidein_site", "desired_sites"}),
        ("RequestMemory <= TARGET.GLIDEIN_MaxMemMBs", {"requestmemory"}, {"glidein_maxmemmbs", "requestmemory"}),
        ("Target.X > my.Y", {"y"}, {"x", "y"}),
        ("TARGET.a.b", set(), {"a"}),
        ('eval("TARGET.x")', {ANY}, {ANY}),
        ("evalInEachContext(a, TARGET.l)", {ANY}, {ANY}),
        ('TARGET["x"]', {ANY}, {ANY}),
        ("size(MY) > 1", {ANY}, {ANY}),
        ("[a = c].a", {ANY}, {ANY}),
        ("other.x", {ANY}, {ANY}),
        ("symmetricMatch", {ANY}, {ANY}),
        ('strcat(MY.a, "TARGET.b")', {"a"}, {"a"}),
    ],
)
def test_references(text, job, entry):
    from classad2 import ExprTree

    assert references(text, ExprTree(text)) == (frozenset(job), frozenset(entry))


@pytest.mark.parametrize(
    "text, membership",
    [
        ("stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)", ("glidein_site", "desired_sites")),
        ("(stringListIMember(TARGET.Site, Sites))", ("site", "sites")),
        ("stringListMember(TARGET.S, MY.D ?: TARGET.S)", ("s", "d")),
        ("stringListMember(TARGET.S, MY.D ?: a ? b : c)", None),
        ("stringListMember(TARGET.S, MY.D, \";\")", None),  # own delimiters: not handled
        ("stringListMember(MY.D, TARGET.S)", None),  # the job's value is the member: not an index
        ("stringListMember(TARGET.S, MY.D) + f(x)", None),
        ("TARGET.S == MY.D", ("s", "d")),
        ("MY.D =?= TARGET.S", ("s", "d")),
        ("TARGET.S =!= MY.D", None),
        ("TARGET.S == MY.D + 1", None),
        ("TARGET.S == true", None),
    ],
)
def test_membership_shortcut_is_recognised_only_where_sound(text, membership):
    (part,) = plan_match(text).parts
    assert part.membership == (Membership(*membership) if membership else None)


def _premise_cases() -> list[tuple[str, str]]:
    fixed = [("Site1", "Site1,Site10"), ("Site10", "Site1,Site10"), ("b", "a,,  b"), ("B", "a,b"),
             ("a b", "a b,c"), ("", "a,,b"), ("Sit", "Site1"), ("x", ""), ("a", "a-b"), ("a_b", "a_b c"),
             ("T2_US", "T2_US_Nebraska,T2_US")]
    rng = random.Random(7)
    alphabet = "aA1_, -."
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(400)]
    return fixed + [(words[i], " ".join(words[i + 1:i + 1 + rng.randint(0, 3)]).replace(" ", rng.choice(", ")))
                    for i in range(0, 396, 2)]


def test_membership_shortcut_premise():
    """The premise of the shortcut, checked against classad2 itself: with two strings the functions are
    true or false, and true only if the item occurs in the list as a whole word (ASCII case folded)."""
    import classad2

    from glideinlab.frontend.matching import _occurs_as_word

    for item, text in _premise_cases():
        job, entry = classad2.ClassAd({"D": text}), classad2.ClassAd({"S": item})
        for expr in ("stringListMember(TARGET.S, MY.D)", "stringListIMember(TARGET.S, MY.D)", "TARGET.S == MY.D",
                     "TARGET.S =?= MY.D"):
            result = classad2.ExprTree(expr).eval(job, entry)
            assert result in (True, False), (expr, item, text)
            assert not result or _occurs_as_word(item.lower(), text.lower()), (expr, item, text)


@pytest.mark.parametrize("left", ["true", "false", "undefined", "error", "1", "0", '"s"', "2.5"])
@pytest.mark.parametrize("right", ["true", "false", "undefined", "error", "1", "0", '"s"', "2.5"])
def test_classad_and_rules_the_combination_relies_on(left, right):
    """true && x is x for a boolean x; false && x is false; both checked against classad2."""
    import classad2

    result = classad2.ExprTree(f"{left} && {right}").eval()
    if left == "false":
        assert result is False
    if left == "true" and right in ("true", "false"):
        assert result is (right == "true")
