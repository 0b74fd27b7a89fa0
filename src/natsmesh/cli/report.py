"""`natsmesh report ...`: the seed's reports through the system account, and every copy's lag."""

from __future__ import annotations

import sys

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import json_option, load, say, show, spec_option
from natsmesh.observe.reports import REPORTS


@cli.group()
def report() -> None:
    """Reports through the system accounts: one request per cluster, all at once, one reply per server (with the
    seed's bridged system account, `examples/seed.yaml`, one request at the hub that every server answers)."""


def _report_command(name: str, help_text: str) -> None:
    @report.command(name=name, help=help_text)
    @spec_option
    @json_option
    @click.option(
        "--timeout",
        type=float,
        default=3.0,
        show_default=True,
        help="Seconds to wait for servers that have not answered.",
    )
    def _cmd(spec_path: str | None, as_json: bool, timeout: float) -> None:
        from natsmesh.cli.tables import REPORT_TABLES
        from natsmesh.observe.reports import report as ask

        rep = ask(load(spec_path), name, timeout=timeout)
        show(rep, as_json, REPORT_TABLES[name])
        if rep.conflicts:
            say(
                "replies not trusted (someone answered in a server's name):\n  - " + "\n  - ".join(rep.conflicts),
                fg="red",
                err=True,
            )
        if rep.missing:
            say(
                f"no reply after {timeout:g} s from {len(rep.missing)} server(s): {', '.join(rep.missing)}",
                fg="yellow",
                err=True,
            )
            sys.exit(2)


for _name, _kind in REPORTS.items():
    _report_command(_name, _kind.help)


@report.command(name="lag")
@spec_option
@json_option
@click.option("--max-lag", type=click.IntRange(0), default=None, help="Exit 1 if any lag exceeds N messages.")
@click.option("--max-inactive", type=float, default=None, help="Exit 1 if any link was idle longer (seconds).")
def report_lag(spec_path: str | None, as_json: bool, max_lag: int | None, max_inactive: float | None) -> None:
    """Every mirror and source: upstream and local last sequence, lag, last active, error."""
    from natsmesh.cli.tables import tables_lag
    from natsmesh.client import run
    from natsmesh.observe.lag import lag_report

    rep = run(lag_report(load(spec_path), max_lag, max_inactive))
    show(rep, as_json, tables_lag)
    if not as_json:
        for line in rep.violations:
            say(f"  {line}", fg="red", err=True)
    if rep.violations and rep.checked:
        sys.exit(1)
