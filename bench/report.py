"""Results as data, and the two ways they are shown: a terminal table and docs/performance.md.

Every figure is a :class:`Row` holding one sample per repeated run, so the
report can show min / median / max. Comparisons are ratios between rows
measured in the same run on the same machine, never absolute thresholds;
goals (:class:`Goal`) are reported, not asserted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.util import Spread


@dataclass
class Row:
    """One figure for one subject: ``samples`` holds one value per repeated run.

    A row without samples was not measured; ``note`` says why (for example
    "not installed: npm is missing").
    """

    metric: str
    subject: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def spread(self) -> Spread | None:
        return Spread.of(self.samples) if self.samples else None

    @property
    def median(self) -> float | None:
        s = self.spread
        return s.median if s else None


@dataclass
class Goal:
    """A target the project set itself, with what was measured against it.

    ``met`` is None when the figure could not be measured.
    """

    name: str
    target: str
    measured: str
    met: bool | None

    @property
    def status(self) -> str:
        return {True: "met", False: "missed", None: "not measured"}[self.met]


@dataclass
class Section:
    """One benchmark section's results.

    ``primary`` names the subject whose rows are compared with every other
    subject's row of the same metric (ratio = primary median ÷ other median).
    """

    key: str
    title: str
    method: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    primary: str | None = None

    def row(self, metric: str, subject: str) -> Row | None:
        return next((r for r in self.rows if r.metric == metric and r.subject == subject), None)

    def ratios(self, row: Row) -> list[tuple[str, float]]:
        """``row``'s median divided by each other measured subject's median for its metric."""
        if self.primary is None or row.subject != self.primary or row.median is None:
            return []
        out = []
        for other in self.rows:
            if other.metric == row.metric and other.subject != row.subject and other.median:
                out.append((other.subject, row.median / other.median))
        return out


def fmt(value: float | None) -> str:
    """A figure with as many digits as it deserves."""
    if value is None:
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def ratio_text(ratios: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{r:.2f}x {name}" for name, r in ratios)


HEADERS = ("metric", "subject", "median", "min", "max", "unit", "runs", "ratio", "note")


def _cells(section: Section, row: Row) -> list[str]:
    s = row.spread
    return [row.metric, row.subject, fmt(s.median if s else None), fmt(s.min if s else None),
            fmt(s.max if s else None), row.unit, str(s.runs if s else 0),
            ratio_text(section.ratios(row)), row.note]


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def goal_cells(goal: Goal) -> list[str]:
    return [goal.name, goal.target, goal.measured, goal.status]


GOAL_HEADERS = ("goal", "target", "measured", "status")


def render_text(sections: Sequence[Section]) -> str:
    """The terminal report: one table per section, then every goal."""
    parts = []
    for sec in sections:
        parts.append(f"== {sec.title} ==")
        parts.append(_text_table(HEADERS, [_cells(sec, r) for r in sec.rows]))
        parts.extend(f"  note: {n}" for n in sec.notes)
        parts.append("")
    goals = [g for sec in sections for g in sec.goals]
    if goals:
        parts.append("== Goals (reported, not asserted) ==")
        parts.append(_text_table(GOAL_HEADERS, [goal_cells(g) for g in goals]))
    return "\n".join(parts).rstrip() + "\n"


def noise_lines(sections: Sequence[Section]) -> list[str]:
    """How far apart repeated runs were, worst first: the honest error bar of this report."""
    spreads = [(r.spread.relative_range, sec.title, r) for sec in sections for r in sec.rows
               if r.spread and r.spread.runs > 1]
    spreads.sort(key=lambda x: -x[0])
    return [f"{title}: {r.metric} ({r.subject}) varied by {rel * 100:.0f}% of its median "
            f"across {r.spread.runs} runs" for rel, title, r in spreads[:8] if r.spread]


def render_markdown(sections: Sequence[Section], machine: dict[str, str], *,
                    command: str, caveats: Sequence[str] = ()) -> str:
    """The whole of docs/performance.md."""
    lines = [
        "# Performance",
        "",
        f"Generated by `{command}` (the `bench/` package); rerun it to refresh this page.",
        "Figures are compared as **ratios against peers measured in the same run on the",
        "same machine**; absolute numbers move with the hardware and with whatever else",
        "the machine is doing. Each figure is the median of repeated runs, with the",
        "minimum and maximum beside it. Goals are reported, never asserted by the test suite.",
        "",
        "## Machine",
        "",
        _md_table(("", ""), [[k, v] for k, v in machine.items()]),
        "",
    ]
    versions = {k: v for sec in sections for k, v in sec.versions.items()}
    if versions:
        lines += ["## Versions", "", _md_table(("software", "version"),
                                               [[k, v] for k, v in versions.items()]), ""]
    goals = [g for sec in sections for g in sec.goals]
    if goals:
        lines += ["## Goals", "", _md_table(GOAL_HEADERS, [goal_cells(g) for g in goals]), ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        if sec.method:
            lines += ["Method:", ""] + [f"- {m}" for m in sec.method] + [""]
        if sec.rows:
            lines += [_md_table(HEADERS, [_cells(sec, r) for r in sec.rows]), ""]
        if sec.primary:
            lines += [f"The ratio column is the {sec.primary} median divided by the other "
                      "subject's median for the same metric.", ""]
        lines += [f"- {n}" for n in sec.notes]
        if sec.notes:
            lines.append("")
    noise = noise_lines(sections)
    lines += ["## Noise", ""]
    lines += [f"- {c}" for c in caveats]
    lines += [f"- {n}" for n in noise]
    if not caveats and not noise:
        lines.append("- Each figure was measured once; there is no spread to report.")
    lines.append("")
    return "\n".join(lines)
