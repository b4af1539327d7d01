"""``python -m bench``: run the benchmark sections, print a table, write docs/performance.md.

Options:

``--quick``
    fewer repeats and smaller workloads, for a fast look (noisier);
``--only SECTION``
    run one section (repeatable): registry, search, sandbox, engine;
``--output PATH``
    where to write the Markdown report (default ``docs/performance.md``;
    ``-`` to skip writing).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.report import Section, render_markdown, render_text
from bench.util import REPO_ROOT, load_average, machine_info, progress

SECTIONS = ("registry", "search", "sandbox", "engine")
TITLES = {
    "registry": "Registry vs peers: publish and download",
    "search": "Catalog search and gear page",
    "sandbox": "Sandbox: hook calls and workers",
    "engine": "Engine: ingest and decide through sandboxed gears",
}


def _runner(name: str, quick: bool) -> Callable[[], Section]:
    """The section's entry point, imported only when it runs."""
    if name == "registry":
        import bench.registry_peers as registry_peers

        return lambda: registry_peers.run(registry_peers.RegistrySize.quick() if quick else None)
    if name == "search":
        import bench.search as search

        return lambda: search.run(search.SearchSize.quick() if quick else None)
    if name == "sandbox":
        import bench.sandbox as sandbox

        return lambda: sandbox.run(sandbox.SandboxSize.quick() if quick else None)
    import bench.engine as engine

    return lambda: engine.run(engine.EngineSize.quick() if quick else None)


def run_sections(names: list[str], quick: bool) -> list[Section]:
    """Run each section; one that fails is reported as failed, the others still run."""
    out = []
    for name in names:
        t0 = time.monotonic()
        progress(f"section {name}: starting")
        try:
            sec = _runner(name, quick)()
        except Exception as exc:  # a broken section must not hide the others' numbers
            traceback.print_exc()
            sec = Section(name, TITLES[name], notes=[f"this section failed: {exc!r}"])
        progress(f"section {name}: done in {time.monotonic() - t0:.0f} s")
        out.append(sec)
    return out


def caveats(quick: bool, load_before: tuple[float, float, float] | None) -> list[str]:
    """What the reader must know before trusting these numbers."""
    out = []
    if quick:
        out.append("Run with --quick: fewer repeats and smaller workloads; expect more noise.")
    load_after = load_average()
    if load_before and load_after:
        out.append(f"Load average (1 min) was {load_before[0]:.2f} at the start and "
                   f"{load_after[0]:.2f} at the end; on an otherwise idle machine it stays near "
                   "what the benchmark itself adds (about 1-2 on 2 cores during the load tests).")
    out.append("The load generators, the servers and the engine share the same cores, so "
               "absolute figures are lower than on a dedicated server; the ratios between "
               "subjects measured in the same run are the figures to compare.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, faster, noisier")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--output", default=str(REPO_ROOT / "docs" / "performance.md"),
                        help="Markdown report path, or - for none")
    args = parser.parse_args(argv)
    names = [s for s in SECTIONS if not args.only or s in args.only]
    machine = machine_info()
    load_before = load_average()
    sections = run_sections(names, args.quick)
    sys.stdout.write(render_text(sections))
    if args.output != "-":
        command = "make bench" + (f" BENCH_ARGS='{' '.join(argv or sys.argv[1:])}'"
                                  if (argv or sys.argv[1:]) else "")
        text = render_markdown(sections, machine, command=command,
                               caveats=caveats(args.quick, load_before))
        Path(args.output).write_text(text)
        progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
