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
    """Serve the chat API, the widget and the staff page."""
    import uvicorn

    from app.answer.chat_model import load_chat_model
    from app.kb.store import check_chroma_server

    settings = Settings()
    if settings.chroma_url:
        check_chroma_server(settings.chroma_url)  # refuse to start (one line, exit 1) rather than fail in each worker
    if settings.llm:
        load_chat_model(settings)  # likewise: a missing provider package or a bad JOURNEY_LLM, said once
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # then open requests are cancelled
    )


@cli.command()
def ingest(
    target: Annotated[
        str | None, typer.Argument(help="a folder (Markdown, text, HTML, PDF), a web page or a sitemap.xml URL")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; write nothing")] = False,
) -> None:
    """Load, split, embed and store a source; unchanged documents are skipped, vanished ones removed."""
    from app.kb.progress import ProgressBar
    from app.kb.safety import FetchError, UnsafeURLError
    from app.kb.sync import run
    from app.stages.config import load_journey
    from app.stages.detector import EnsembleStageDetector
    from app.state import build_knowledge_base

    settings = Settings()
    target = target or str(settings.docs_dir)
    journey = load_journey(settings.knowledge_dir / "stages.yaml")
    kb = build_knowledge_base(settings)
    detectors: list[EnsembleStageDetector] = []

    def detector() -> EnsembleStageDetector:
        if not detectors:
            detectors.append(EnsembleStageDetector(journey, kb.embeddings, cache_dir=settings.data_dir / "cache"))
        return detectors[0]

    bar = ProgressBar()
    try:
        loaded, report = run(
            target,
            kb=kb,
            settings=settings,
            known_stages=set(journey.names),
            detector_factory=detector,
            dry_run=dry_run,
            progress=bar,
        )
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (UnsafeURLError, FetchError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        bar.close()
    for line in [str(e) for e in loaded.errors] + report.errors[len(loaded.errors) :]:  # then ids of other sources
        typer.echo(f"skipped {line}", err=True)
    for line in loaded.skipped:
        typer.echo(f"left out {line}", err=True)
    if loaded.note:
        typer.echo(f"crawl stopped early: {loaded.note}; documents not reached are kept, nothing removed", err=True)
    typer.echo(f"{target}: {len(loaded.docs)} documents -> collection {kb.name} ({kb.count()} passages)")
    if dry_run:
        for mark, ids in (("+", report.added), ("~", report.updated), ("-", report.removed)):
            for doc_id in ids:
                typer.echo(f"  {mark} {doc_id}")
    typer.echo(report.summary())
    if not dry_run:
        typer.echo(f"stage detector: {detector().fitted['examples']} labelled examples embedded and cached")
        # the knowledge base's words, embedded now rather than on the first turn that checks for a word it lacks
        words = kb.vocabulary().vectors(kb.embeddings.embed_array, settings.data_dir / "cache", kb.embeddings.name)
        typer.echo(f"knowledge words: {len(words)} embedded and cached")
    if loaded.errors and not loaded.docs:
        raise typer.Exit(1)


@cli.command()
def docs(
    source: Annotated[str | None, typer.Option(help="only this source: a folder's path or web:<start URL>")] = None,
    assigned: Annotated[bool, typer.Option("--assigned", help="only documents with model-assigned stages")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the stored documents with their source and stages (assigned ones with the model's confidence)."""
    import json

    from app.state import build_knowledge_base

    found = [d for d in build_knowledge_base(Settings()).documents(source) if d["stages_assigned"] or not assigned]
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for d in found:
        stages = ",".join(d["stages"]) or "-"
        how = f"assigned {d['stage_confidence']:.2f}" if d["stages_assigned"] else "tagged"
        typer.echo(f"{d['id']:<48} {stages:<26} {how:<14} {d['passages']:>3} passages  {d['source']}")


@cli.command("eval-stages")
def eval_stages(
    file: Annotated[Path, typer.Argument(help="JSON lines: {messages: [{role, content}], page?, stage}")],
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    show_errors: Annotated[bool, typer.Option("--errors", help="list the cases classified wrong")] = False,
    no_passages: Annotated[
        bool, typer.Option("--no-passages", help="leave out the stages of the knowledge passages near each message")
    ] = False,
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="ask the configured LLM (JOURNEY_LLM, or OPENAI_API_KEY and OPENAI_BASE_URL) for a stage vote "
            "as the chat service does: "
            "only below JOURNEY_LLM_STAGE_BELOW confidence, never for small talk; prints the share of turns asked",
        ),
    ] = False,
) -> None:
    """Classify the last user message of each case; print precision, recall, confusion, calibration, accuracy."""
    import json

    from app.embeddings import VectorCache, make_embeddings
    from app.stages.config import load_journey
    from app.stages.detector import EnsembleStageDetector
    from app.stages.evaluate import EvalFileError, evaluate, load_cases
    from app.stages.passages import nearest
    from app.state import build_knowledge_base

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
    embeddings = make_embeddings(settings)
    detector = EnsembleStageDetector(journey, embeddings, cache_dir=settings.data_dir / "cache")
    lookup = None
    if not no_passages:  # as the chat service does: the passages nearest to each message (its own embedding here)
        kb, vectors = build_knowledge_base(settings, embeddings), VectorCache(embeddings)
        lookup = lambda text: nearest(kb, vectors.embed_array([text])[0])  # noqa: E731
    voter = None
    if llm:
        if not settings.llm_enabled:
            typer.echo("error: --llm needs an LLM: set JOURNEY_LLM, or OPENAI_API_KEY (and OPENAI_BASE_URL)", err=True)
            raise typer.Exit(2)
        voter = llm_voter(settings, journey)
    report = evaluate(detector, cases, journey.names, lookup, voter)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "fitted": detector.fitted}, indent=2))
        return
    if show_errors:
        for case, gold, got in zip(cases, report.gold, report.predicted, strict=True):
            if gold != got:
                typer.echo(f"expected {gold:<13} got {got:<13} {case.messages[-1]['content'][:100]!r}")
        typer.echo("")
    typer.echo(report.as_text())


def llm_voter(settings: Settings, journey):
    """A CountingVoter asking the configured LLM, on the turns the chat service would ask it about."""
    import asyncio

    from app.chat.service import is_small_talk
    from app.stages.evaluate import CountingVoter
    from app.stages.llm import as_vote, wants_vote
    from app.state import build_llm

    logging.disable(logging.INFO)  # a log line per LLM call would bury the figures
    _, classifier = build_llm(settings.model_copy(update={"llm_stage": True}), journey)
    loop = asyncio.new_event_loop()  # one loop for every call: the client's connections belong to it

    def ask(signals):
        answer = loop.run_until_complete(classifier.classify(signals))
        return None if answer is None else as_vote(answer, journey.names, settings.llm_stage_weight)

    def wanted(message: str, result) -> bool:
        return not is_small_talk(message) and wants_vote(result, settings.llm_stage_below)

    return CountingVoter(ask, wanted)


@cli.command("eval-retrieval")
def eval_retrieval(
    file: Annotated[Path, typer.Argument(help='JSON lines: {"question": ..., "expected": [document id or path]}')],
    as_json: Annotated[bool, typer.Option("--json", help="print the figures and the misses as JSON")] = False,
    vector_only: Annotated[bool, typer.Option("--vector-only", help="vector similarity only, no BM25")] = False,
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
    report = evaluate(kb, cases, hybrid=not vector_only)
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.as_text())


@cli.command("eval-answers")
def eval_answers(
    file: Annotated[Path, typer.Argument(help="JSON lines: {question, history?, answerable, facts: [regex]}")],
    as_json: Annotated[bool, typer.Option("--json", help="print the figures and the failures as JSON")] = False,
    show_errors: Annotated[bool, typer.Option("--errors", help="list the failed cases with their replies")] = False,
) -> None:
    """Ask every question as a visitor would; print the share answered with its facts and the share declined."""
    import asyncio
    import json
    import tempfile

    from app.answer.evaluate import AnswerEvalError, load_cases, run_cases
    from app.state import build_services

    if not file.is_file():
        typer.echo(f"error: evaluation file not found: {file}", err=True)
        raise typer.Exit(2)
    try:
        cases = load_cases(file)
    except AnswerEvalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    logging.disable(logging.INFO)  # a log line per turn would bury the figures
    with tempfile.TemporaryDirectory(prefix="journey-eval-") as scratch:
        # the turns go to a scratch database: no touchpoints in the real one, no staff answers or corrections used
        settings = Settings(database_url=f"sqlite:///{scratch}/eval.db", redis_url=None, webhook_urls="")
        services = build_services(settings)
        try:
            if services.kb.count() == 0:
                typer.echo(
                    f"error: the knowledge collection {services.kb.name} is empty: run `journey ingest`", err=True
                )
                raise typer.Exit(2)
            report = asyncio.run(run_cases(services.chat, cases))
        finally:
            services.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    if show_errors:
        typer.echo(report.errors_text() + "\n")
    typer.echo(report.as_text())


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


@cli.command()
def chat(
    url: Annotated[str | None, typer.Option(help="a running server, e.g. http://127.0.0.1:8000")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print each reply object as a JSON line")] = False,
) -> None:
    """Talk to the guide in the terminal: one message a line, replies streamed; /new, /quit."""
    import httpx

    from app.terminal import run_chat

    try:
        run_chat(url=url, settings=Settings(), as_json=as_json)
    except KeyboardInterrupt:
        typer.echo("")
    except httpx.HTTPError as exc:
        typer.echo(f"\nerror: cannot talk to {url}: {exc}", err=True)
        raise typer.Exit(1) from exc


@cli.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="only touchpoints at or after this ISO date/time (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="only touchpoints before this ISO date/time (UTC)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")] = None,
) -> None:
    """Write every touchpoint as CSV or JSON lines, streamed from the database in batches."""
    import sys

    from app.export import lines, parse_when
    from app.store.db import make_engine, make_sessionmaker

    if fmt not in ("csv", "jsonl"):
        typer.echo("error: --format must be csv or jsonl", err=True)
        raise typer.Exit(2)
    try:
        window = {"since": parse_when(since), "until": parse_when(until)}
    except ValueError as exc:
        typer.echo(f"error: not an ISO date: {exc}", err=True)
        raise typer.Exit(2) from exc
    sessions = make_sessionmaker(make_engine(Settings()))
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        for chunk in lines(sessions, fmt=fmt, **window):
            out.write(chunk)
    finally:
        if output:
            out.close()


webhooks_cli = typer.Typer(help="The webhook outbox.", no_args_is_help=True)
cli.add_typer(webhooks_cli, name="webhooks")


@webhooks_cli.command("status")
def webhooks_status() -> None:
    """Events pending, delivered and given up, per URL."""
    from app.store.db import make_engine, make_sessionmaker
    from app.webhooks.outbox import counts_by_url

    with make_sessionmaker(make_engine(Settings()))() as session:
        found = counts_by_url(session=session)
    if not found:
        typer.echo("no webhook events")
    for url, by_status in found.items():
        typer.echo(f"{url}  " + "  ".join(f"{status} {count}" for status, count in by_status.items()))


@webhooks_cli.command("retry-failed")
def webhooks_retry_failed() -> None:
    """Queue the events that were given up (older than JOURNEY_WEBHOOK_MAX_AGE_HOURS) for delivery again."""
    from app.store.db import make_engine, make_sessionmaker
    from app.webhooks.outbox import retry_failed

    with make_sessionmaker(make_engine(Settings()))() as session:
        typer.echo(f"{retry_failed(session=session)} events queued again")


@cli.command()
def purge(
    days: Annotated[
        int | None, typer.Option(help="delete touchpoints older than this (default JOURNEY_RETENTION_DAYS)")
    ] = None,
) -> None:
    """Apply the retention period: delete old touchpoints and conversations left empty."""
    from app.security.retention import purge as run_purge

    settings = Settings()
    days = days or settings.retention_days
    if not days:
        typer.echo("error: give --days or set JOURNEY_RETENTION_DAYS", err=True)
        raise typer.Exit(2)
    with _staff_sessions()() as session:
        counts = run_purge(session=session, days=days)
    typer.echo(
        f"deleted {counts['touchpoints']} touchpoints and {counts['conversations']} conversations "
        f"older than {days} days"
    )


db_cli = typer.Typer(help="The touchpoint database schema (Alembic).", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest revision (the server also does this when it starts)."""
    from app.store import schema
    from app.store.db import make_engine

    engine = make_engine(Settings(), upgrade=False)
    typer.echo(f"database at revision {schema.upgrade(engine)}")
    engine.dispose()


@db_cli.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one shipped."""
    from app.store import schema
    from app.store.db import make_engine

    engine = make_engine(Settings(), upgrade=False)
    typer.echo(f"current: {schema.current(engine) or 'none (not under Alembic yet)'}\nhead: {schema.head()}")
    engine.dispose()


@db_cli.command("revision")
def db_revision(message: Annotated[str, typer.Option("-m", "--message", help="what the revision changes")]) -> None:
    """Autogenerate a revision from the models' difference with the (upgraded) database; review it before use."""
    from app.store import schema
    from app.store.db import make_engine

    engine = make_engine(Settings())
    typer.echo(f"wrote {schema.revision(engine, message)}")
    engine.dispose()


def main() -> None:
    """Entry point of the console script."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app.answer.chat_model import LLMConfigError
    from app.kb.store import KnowledgeUnavailable

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin on every start
    try:
        cli()
    except (KnowledgeUnavailable, LLMConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        said = "; ".join(f"{_env_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid configuration: {said}", err=True)
        raise SystemExit(1) from None
    except SettingsError as exc:  # a value that is not even JSON, e.g. JOURNEY_LLM_OPTIONS
        typer.echo(f"error: invalid configuration: {exc} ({exc.__cause__ or ''})", err=True)
        raise SystemExit(1) from None


def _env_name(loc: tuple) -> str:
    """The environment variable behind a Settings field: JOURNEY_<FIELD>, or the field's own alias (OPENAI_...)."""
    name = str(loc[0]) if loc else "?"
    return name if name.isupper() else f"JOURNEY_{name.upper()}"
