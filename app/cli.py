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


def main() -> None:
    """Entry point of the console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli()
