"""``tre dataset ingest`` and ``tre dataset report``.

The lead mounts them with ``register_dataset_commands(dataset_app)``. Like the rest of the CLI they act
as the operator unless ``--as USER`` names a user; the policy engine decides every ingest (the operator
owns no data, so ingests are normally run ``--as`` a data owner).
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from tre_platform.actor import Actor
from tre_platform.errors import PolicyDenied, TreError

AsUser = Annotated[str | None, typer.Option("--as", help="act as this user (their permissions apply)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _actor(session: Any, as_user: str | None) -> Actor:
    if as_user is None:
        return Actor.system(f"cli:{getpass.getuser()}")
    from tre_platform.api.users.models import User

    user = session.scalar(select(User).where(User.username == as_user))
    if user is None:
        raise TreError(f"no user named {as_user!r}; `tre user list` shows them", field="as")
    return Actor.of(user)


def _fail(error: TreError, as_json: bool) -> typer.Exit:
    from tre_platform.pipelines.errors import DeliveryInvalid

    if as_json:
        body: dict[str, Any] = {"error": error.code, "message": error.message}
        if isinstance(error, DeliveryInvalid):
            body["report"] = error.report.to_dict()
        if isinstance(error, PolicyDenied):
            body["reasons"] = error.reasons
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return typer.Exit(1)
    if isinstance(error, DeliveryInvalid):
        report = error.report.to_dict()
        if all(p["column"] is None and not p["examples"] for p in report["problems"]):
            # A problem with the file as a whole (too large, empty, not UTF-8): one sentence, no table.
            reasons = "; ".join(p["message"] for p in report["problems"])
            err_console.print(
                f"[bold red]rejected:[/] {report['source']}: {reasons}; nothing was published.",
                soft_wrap=True,
            )
            return typer.Exit(1)
        err_console.print(
            f"[bold red]rejected:[/] {report['source']}: {len(report['problems'])} kinds of problem in "
            f"{report['n_problems']} places; nothing was published."
        )
        table = Table("column", "problem", "rows affected", "first rows", "values")
        for p in report["problems"]:
            table.add_row(
                p["column"] or "(file)",
                p["message"].split(": ", 1)[-1] if p["column"] else p["message"],
                str(p["count"]),
                ", ".join(str(e["row"]) for e in p["examples"]),
                ", ".join(repr(e["value"]) for e in p["examples"][:5] if e["value"] is not None),
            )
        err_console.print(table)
        return typer.Exit(1)
    err_console.print(f"[bold red]error:[/] {error.message}", soft_wrap=True)
    return typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{report['dataset']}[/] v{report['version']}: {report['row_count']} rows from "
        f"{report['source_name']} ({report['created_at']})\n  {report['path']}"
    )
    for kind, m in report["match"].items():
        title = f"{kind} index → {m['id_column']} ({m['n_records']} records, Splink {m['backend']})"
        table = Table(title=title)
        table.add_column("method")
        table.add_column("records", justify="right")
        table.add_column("share", justify="right")
        for method, count in (m["counts"] or {}).items():
            table.add_row(method, str(count), f"{(m['rates'] or {}).get(method, 0):.1%}")
        console.print(table)
        accuracy = (
            f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f}"
            if m["precision"] is not None
            else "precision/recall: no truth supplied"
        )
        console.print(
            f"  match rate {m['match_rate']:.1%}; unlinkable (no candidate) {m['n_unlinkable']}; "
            f"below threshold {m['n_below_threshold']} {m['threshold']}; {accuracy}"
        )
        for finding in m.get("findings") or []:
            console.print(f"  [bold red]FINDING[/] {finding}")
        estimated = m.get("estimated") or {}
        if estimated.get("precision") is not None:
            console.print(
                f"  estimated from match probabilities (no truth needed): precision "
                f"{estimated['precision']:.3f}, recall {estimated['recall']:.3f}; blocking recall "
                f"{_num((m.get('blocking') or {}).get('estimated_recall'))}"
            )
        review = m.get("review") or {}
        if review.get("queued"):
            console.print(
                f"  clerical review: {review['queued']} records whose best candidate scored between "
                f"{review['lower_match_probability']} and {review['upper_match_probability']} are queued"
            )
        growth = m.get("growth") or {}
        if growth:
            console.print(
                f"  new entries: {growth.get('records')} unmatched records became {growth.get('entries')} "
                f"entries ({growth.get('method')})"
            )
        for note in m["notes"]:
            console.print(f"  [dim]{note}[/]")
        if m["m_u"]:
            mu = Table("comparison", "level", "m", "u", "weight", title="m/u parameters")
            for p in m["m_u"]:
                mu.add_row(
                    str(p["comparison"]),
                    str(p["level"]),
                    _num(p["m_probability"]),
                    _num(p["u_probability"]),
                    _num(p["match_weight"]),
                )
            console.print(mu)
    quality = report["quality"] or {}
    table = Table("dimension", "score", "detail", title="quality (Government Data Quality Framework)")
    completeness = quality.get("completeness", {})
    table.add_row(
        "completeness",
        _num(completeness.get("overall")),
        f"complete rows {_num(completeness.get('complete_rows'))}",
    )
    uniqueness = quality.get("uniqueness", {})
    table.add_row(
        "uniqueness",
        _num(uniqueness.get("overall")),
        f"{uniqueness.get('duplicate_rows')} duplicate rows; distinct {uniqueness.get('distinct_by_column')}",
    )
    validity = quality.get("validity", {})
    table.add_row("validity", _num(validity.get("overall")), ", ".join(validity.get("by_rule", {})))
    consistency = quality.get("consistency", {})
    table.add_row("consistency", _num(consistency.get("overall")), ", ".join(consistency.get("by_rule", {})))
    timeliness = quality.get("timeliness", {})
    table.add_row(
        "timeliness",
        f"{timeliness.get('overall_lag_days')} days",
        f"latest {timeliness.get('latest')} as of {timeliness.get('as_of')}",
    )
    console.print(table)
    if report["charts"]:
        console.print("charts:")
        for chart in report["charts"]:
            console.print(f"  {chart}")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def register_dataset_commands(dataset_app: typer.Typer) -> None:
    """Add ``ingest`` and ``report`` to the ``tre dataset`` command group."""

    @dataset_app.command("ingest")
    def ingest_command(
        path: Annotated[Path, typer.Argument(help="the delivery: CSV with a header row (UTF-8) or Parquet")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="registered dataset name")],
        engine: Annotated[str, typer.Option(help="auto | pandas | spark | dask")] = "auto",
        source_name: Annotated[str | None, typer.Option(help="name recorded for the delivery")] = None,
        truth: Annotated[
            Path | None, typer.Option(help="demo data: truth file (row, <kind>_id) for precision/recall")
        ] = None,
        allow_duplicate: Annotated[
            bool, typer.Option(help="publish a byte-identical delivery again")
        ] = False,
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Validate a delivery, link it to the reference indexes and publish it as the next version."""
        from tre_platform.db.session import session_scope
        from tre_platform.pipelines import ingest, rich_progress
        from tre_platform.pipelines.report import dataset_report

        try:
            with session_scope() as session:
                actor = _actor(session, as_user)
                version = ingest(
                    session,
                    actor,
                    dataset,
                    path,
                    engine=engine,
                    source_name=source_name,
                    truth=truth,
                    allow_duplicate=allow_duplicate,
                    progress=None if as_json else rich_progress,
                )
                report = dataset_report(session, actor, dataset, version.version)
        except TreError as error:
            raise _fail(error, as_json) from None
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
            return
        console.print(f"[bold green]published[/] {dataset} v{report['version']} ({report['row_count']} rows)")
        _print_report(report)

    @dataset_app.command("report")
    def report_command(
        dataset: Annotated[str, typer.Argument(help="dataset name")],
        version: Annotated[int | None, typer.Option(help="version number (default: the latest)")] = None,
        as_user: AsUser = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Show a version's match-quality report, its quality dimensions and where its charts are."""
        from tre_platform.db.session import session_scope
        from tre_platform.pipelines.report import dataset_report

        try:
            with session_scope() as session:
                report = dataset_report(session, _actor(session, as_user), dataset, version)
        except TreError as error:
            raise _fail(error, as_json) from None
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
            return
        _print_report(report)
