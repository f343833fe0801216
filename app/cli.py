"""The `journey` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings

cli = typer.Typer(help="Journey Guide: a customer-journey chatbot for your website.", no_args_is_help=True)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the chat API (and later the widget and staff pages)."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@cli.command()
def ingest(
    path: Annotated[Path | None, typer.Argument(help="folder of Markdown documents (default: knowledge/docs)")] = None,
) -> None:
    """Split, embed and store the documents in Chroma; unchanged ones are skipped, vanished ones removed."""
    from app.kb.documents import load_folder
    from app.stages.config import load_journey
    from app.state import build_knowledge_base

    settings = Settings()
    folder = path or settings.docs_dir
    journey = load_journey(settings.knowledge_dir / "stages.yaml")
    try:
        docs, errors = load_folder(folder, set(journey.names))
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line in errors:
        typer.echo(f"skipped {line}", err=True)
    kb = build_knowledge_base(settings)
    report = kb.ingest(docs, errors=errors)
    typer.echo(f"{folder}: {len(docs)} documents -> collection {kb.name} ({kb.count()} passages)")
    typer.echo(report.summary())
    from app.stages.detector import EnsembleStageDetector

    detector = EnsembleStageDetector(journey, kb.embeddings, cache_dir=settings.data_dir / "cache")
    typer.echo(f"stage detector: {detector.fitted['examples']} labelled examples embedded and cached")
    if errors and not docs:
        raise typer.Exit(1)


@cli.command("eval-stages")
def eval_stages(
    file: Annotated[Path, typer.Argument(help="JSON lines: {messages: [{role, content}], page?, stage}")],
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    show_errors: Annotated[bool, typer.Option("--errors", help="list the cases classified wrong")] = False,
) -> None:
    """Classify the last user message of each case; print precision, recall, confusion, calibration, accuracy."""
    import json

    from app.embeddings import make_embeddings
    from app.stages.config import load_journey
    from app.stages.detector import EnsembleStageDetector
    from app.stages.evaluate import EvalFileError, evaluate, load_cases

    settings = Settings()
    journey = load_journey(settings.knowledge_dir / "stages.yaml")
    if not file.is_file():
        typer.echo(f"error: evaluation file not found: {file}", err=True)
        raise typer.Exit(2)
    try:
        cases = load_cases(file, journey.names)
    except EvalFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    detector = EnsembleStageDetector(journey, make_embeddings(settings), cache_dir=settings.data_dir / "cache")
    report = evaluate(detector, cases, journey.names)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "fitted": detector.fitted}, indent=2))
        return
    if show_errors:
        for case, gold, got in zip(cases, report.gold, report.predicted, strict=True):
            if gold != got:
                typer.echo(f"expected {gold:<13} got {got:<13} {case.messages[-1]['content'][:100]!r}")
        typer.echo("")
    typer.echo(report.as_text())


@cli.command("eval-retrieval")
def eval_retrieval(
    file: Annotated[Path, typer.Argument(help='JSON lines: {"question": ..., "expected": [document id or path]}')],
    as_json: Annotated[bool, typer.Option("--json", help="print the figures and the misses as JSON")] = False,
) -> None:
    """Search the knowledge base for every question; print recall@1, recall@3 and MRR of the expected documents."""
    import json

    from app.kb.evaluate import RetrievalEvalError, evaluate, load_cases
    from app.state import build_knowledge_base

    if not file.is_file():
        typer.echo(f"error: evaluation file not found: {file}", err=True)
        raise typer.Exit(2)
    try:
        cases = load_cases(file)
    except RetrievalEvalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    kb = build_knowledge_base(Settings())
    if kb.count() == 0:
        typer.echo(f"error: the knowledge collection {kb.name} is empty: run `journey ingest` first", err=True)
        raise typer.Exit(2)
    report = evaluate(kb, cases)
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.as_text())


staff_cli = typer.Typer(help="Staff API tokens.", no_args_is_help=True)
cli.add_typer(staff_cli, name="staff")


def _staff_sessions():
    from app.store.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(Settings()))


@staff_cli.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(help="whose token it is, e.g. an email")],
    role: Annotated[str, typer.Option(help="viewer, editor or admin")] = "viewer",
) -> None:
    """Create a staff token; it is printed once and stored only as a hash."""
    from app.staff.auth import create_token as create

    with _staff_sessions()() as session:
        try:
            row, token = create(session=session, name=name, role=role)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(f"token {row.id} for {row.name} ({row.role}); keep it now, it is not shown again:")
    typer.echo(token)


@staff_cli.command("tokens")
def tokens() -> None:
    """List staff tokens (never their values)."""
    from app.staff.auth import list_tokens

    with _staff_sessions()() as session:
        for row in list_tokens(session=session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            typer.echo(f"{row.id:>4}  {row.role:<7} {state:<18} last used {used:<16} {row.name}")


@staff_cli.command("revoke-token")
def revoke_token(token_id: Annotated[int, typer.Argument(help="the id shown by `journey staff tokens`")]) -> None:
    """Revoke a staff token."""
    from app.staff.auth import revoke_token as revoke

    with _staff_sessions()() as session:
        if not revoke(session=session, token_id=token_id):
            typer.echo(f"error: no active token {token_id}", err=True)
            raise typer.Exit(2)
    typer.echo(f"revoked token {token_id}")


def main() -> None:
    """Entry point of the console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli()
