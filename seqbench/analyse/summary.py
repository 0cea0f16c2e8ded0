"""The summary a claims document opens with, and the verdicts of an earlier rendering it compares with.

The summary (``summary_lines``) says, in a few lines, what the document below it finds:

- the verdict counts over all claims, with the claims not yet measured named (their cells are still
  missing from the results), how many of the claims' sweep cells have finished (a run spanning several
  sessions renders from part of them), and the total cost of the rows in core-hours;
- per claim group one line: the group's verdict counts, the claims behind each verdict, for the
  decided ones (supported, contradicted, measured) the value they rest on, and for the budget-limited
  ones what they would take in brief (seqbench.analyse.budget_need). A claim's group is its
  ``"group"`` in the claims file, else what it measures: its task (``assoc_recall``), ``throughput``
  for benchmark ratios, ``needs data or hardware`` for claims seqbench cannot measure here; the line
  names the paper's sections and figures its claims cite;
- with an earlier rendering (``seqbench report --since PATH``), what changed since: each claim whose
  verdict differs, with the reason the new verdict gives (the gate's text for a budget-limited claim,
  else the new value beside the old), claims new since then and claims no longer in the claims file.

The earlier verdicts are read back from the earlier document itself (``read_verdicts``): its claims
table is seqbench's own output (``| **id**: claim ... | measured | seeds | **verdict** | ...``), the same
in every rendering since the first, so any rendered document can be a ``--since``; no second file is
kept beside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.errors import UserError

NEEDS = "needs"
DECIDED = ("supported", "contradicted", "measured")
ORDER = ("supported", "contradicted", "measured", "inconclusive", "budget-limited", "needs a re-run",
         "not yet measured", NEEDS)
NEEDS_GROUP = "needs data or hardware"


@dataclass(frozen=True)
class Earlier:
    """The verdicts of an earlier rendering: claim id -> (verdict, measured text)."""

    path: str
    rendered: str | None  # the document's "Rendered ..." line, when it has one
    verdicts: dict[str, tuple[str, str]]


def claim_group(claim: dict[str, Any]) -> str:
    """The claim's group: its ``"group"``, else its task, ``throughput`` (ratios) or NEEDS_GROUP."""
    if claim.get("group"):
        return str(claim["group"])
    kind = claim["measure"]["kind"]
    if kind == NEEDS:
        return NEEDS_GROUP
    if kind == "ratio":
        return "throughput"
    return str(claim["measure"].get("task", "other"))


def cited(claims: Sequence[dict[str, Any]]) -> str:
    """The paper's sections and figures a group's claims cite (§6.2, Fig. 19), each once, in order."""
    seen: dict[str, None] = {}
    for claim in claims:
        where = str(claim.get("cite", {}).get("where", ""))
        parts = [m.group(0) for m in (re.search(r"§[\d.]*\d", where), re.search(r"Fig\. ?\d+\w*", where)) if m]
        if parts:
            seen.setdefault(", ".join(parts))
    return "; ".join(seen)


def head(text: str) -> str:
    """The value a measured text leads with (``+0.797 ± 0.045``), without its interval's name and notes. An
    earlier document's ``± 0.000`` (a half-width that rounded to zero) reads ``± < 0.0005``: what it meant."""
    first = text.split("; ")[0].split(" — ")[0]
    value = first.split(" (")[0].strip()
    return value[: -len("± 0.000")] + "± < 0.0005" if value.endswith("± 0.000") else value


def count(n: int, noun: str) -> str:
    """``1 claim``, ``2 claims``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _counts(verdicts: Sequence[str]) -> list[tuple[str, int]]:
    found = {v: verdicts.count(v) for v in verdicts}
    return sorted(found.items(), key=lambda vn: (ORDER.index(vn[0]) if vn[0] in ORDER else len(ORDER), vn[0]))


def core_seconds(row: dict[str, Any]) -> float:
    """A row's wall time times the threads it ran on (a bench row says them in its device: ``cpu (1 threads)``)."""
    threads = row.get("threads")
    if not threads:
        found = re.search(r"\((\d+) threads?\)", str(row.get("device") or ""))
        threads = int(found.group(1)) if found else 1
    return (row.get("wall_time_s") or 0.0) * threads


def group_line(name: str, members: Sequence[tuple[dict[str, Any], Any]]) -> str:
    """One group's line: its verdict counts, the claims behind each, the decided ones with their value."""
    parts = []
    for verdict, n in _counts([r.verdict for _, r in members]):
        ids = [f"{c['id']} ({head(r.text)})" if verdict in DECIDED else
               f"{c['id']} ({r.need})" if getattr(r, "need", None) else c["id"]
               for c, r in members if r.verdict == verdict]
        parts.append(f"{n} {verdict} ({', '.join(ids)})" if verdict != NEEDS else
                     f"{n} needing data or hardware this machine lacks ({', '.join(ids)})")
    where = cited([c for c, _ in members])
    return f"- **{name}**{f' ({where})' if where else ''}, {count(len(members), 'claim')}: " + "; ".join(parts)


def reason(result: Any) -> str:
    """Why a claim has its verdict now, in the document's own words: the gate's reason (what it would take
    left to the claim's row), else the value."""
    if result.why:
        return result.why.split("; what it would take")[0]
    return head(result.text)


def changes(outcomes: Sequence[tuple[dict[str, Any], Any]], earlier: Earlier) -> list[str]:
    """The lines on what changed since ``earlier``."""
    now = {c["id"] for c, _ in outcomes}
    flipped, new, same = [], [], 0
    for claim, result in outcomes:
        before = earlier.verdicts.get(claim["id"])
        if before is None:
            new.append(f"- **{claim['id']}**: new claim, now {result.verdict} — {reason(result)}")
        elif before[0] != result.verdict:
            was = f" (was {head(before[1])})" if before[1] else ""
            flipped.append(f"- **{claim['id']}**: {before[0]} → {result.verdict} — {reason(result)}{was}")
        else:
            same += 1
    gone = [f"- **{cid}**: no longer a claim (was {verdict})" for cid, (verdict, _) in earlier.verdicts.items()
            if cid not in now]
    when = f"rendered {earlier.rendered}; " if earlier.rendered else ""
    lines = [f"Since {earlier.path} ({when}{count(len(earlier.verdicts), 'claim')} there): "
             f"{count(len(flipped), 'verdict')} changed, {count(len(new), 'new claim')}, "
             f"{count(len(gone), 'claim')} no longer in the claims file, {same} unchanged.", ""]
    return lines + flipped + new + gone + ([""] if flipped or new or gone else [])


def cells_text(outcomes: Sequence[tuple[dict[str, Any], Any]],
               progress: dict[str, dict[str, tuple[int, int]] | None]) -> str:
    """``Cells: 370 of 400 finished, 30 still to run (claims read from part of their cells: ...).`` over
    the claims' sweeps, each model's cells counted once however many claims read them."""
    cells: dict[str, tuple[int, int]] = {}
    short: list[str] = []
    for claim, _ in outcomes:
        found = progress.get(claim["id"])
        if not found:
            continue
        cells.update(found)
        if any(done < total for done, total in found.values()):
            short.append(claim["id"])
    if not cells:
        return ""
    done, total = (sum(x) for x in zip(*cells.values(), strict=True))
    if done >= total:
        return f"Cells: all {total:,} that the claims' sweeps run have finished. "
    return (f"Cells: {done:,} of {total:,} finished, {total - done:,} still to run (claims read from part of "
            f"their cells: {', '.join(short)}). ")


def summary_lines(claims: dict[str, Any], outcomes: Sequence[tuple[dict[str, Any], Any]], runs: Sequence[dict],
                  bench: Sequence[dict], preset: str, earlier: Earlier | None = None,
                  progress: dict[str, dict[str, tuple[int, int]] | None] | None = None) -> list[str]:
    """The document's opening summary (see the module docstring); ``progress``: claim id -> its models'
    (cells finished, cells run), from seqbench.analyse.report.cell_progress."""
    groups: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for claim, result in outcomes:
        groups.setdefault(claim_group(claim), []).append((claim, result))
    missing = [c["id"] for c, r in outcomes if r.verdict == "not yet measured"]
    hours = (sum(core_seconds(r) for r in runs) + sum(core_seconds(r) for r in bench)) / 3600
    counts = ", ".join(f"{n} {v}" for v, n in _counts([r.verdict for _, r in outcomes]))
    lines = ["## Summary", "",
             f"{count(len(outcomes), 'claim')}: {counts}. "
             + (f"Still missing: {count(len(missing), 'claim')} not yet measured, their cells not yet in the results "
                f"({', '.join(missing)}). " if missing else "Every measurable claim has rows. ")
             + cells_text(outcomes, progress or {})
             + f"Cost: {hours:,.2f} core-hours (wall_time_s × threads summed over the {count(len(runs), 'run row')} "
             f"and {count(len(bench), 'bench row')} at preset {preset}).", "",
             "Per claim group (the claims behind each verdict; decided ones with the value they rest on, "
             "budget-limited ones with what they would take):", ""]
    lines += [group_line(name, members) for name, members in groups.items()]
    lines.append("")
    if earlier is not None:
        lines += changes(outcomes, earlier)
    return lines


# ------------------------------------------------------------------------ earlier renderings

_CELL = re.compile(r"(?<!\\)\|")
_ID = re.compile(r"^\*\*(?P<id>[^*]+)\*\*:")
_VERDICT = re.compile(r"^\*\*(?P<verdict>[^*]+)\*\*$")
_RENDERED = re.compile(r"^- Rendered (?P<when>.+)$", re.MULTILINE)


def read_verdicts(path: Path) -> Earlier:
    """The verdicts of a document ``seqbench report`` rendered, read from its claims table; a UserError
    when ``path`` cannot be read or has no such table."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read --since {path}: {getattr(exc, 'strerror', None) or exc}; give a document "
                        "seqbench report rendered (e.g. docs/history/reproduction-2026-11-29.md)") from None
    verdicts: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("| **"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in _CELL.split(line)[1:-1]]
        found = _ID.match(cells[0]) if cells else None
        verdict = _VERDICT.match(cells[5]) if len(cells) >= 6 else None
        if found and verdict:
            verdicts[found.group("id")] = (verdict.group("verdict"), cells[3])
    if not verdicts:
        raise UserError(f"--since {path} has no claims table (rows '| **id**: ... | **verdict** | ...'): give a "
                        "document seqbench report rendered")
    when = _RENDERED.search(text)
    return Earlier(str(path), when.group("when") if when else None, verdicts)
