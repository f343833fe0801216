"""The stage detector's behaviours: hysteresis, clear moves, page rules, customers, evidence, configuration."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import REPO, base_env, run_cli

from app.embeddings import LocalMiniLMEmbeddings
from app.stages.config import StageConfigError, load_journey
from app.stages.detector import TOP_K, EnsembleStageDetector, StageSignals
from app.stages.evidence import visitor_evidence

STAGES_FILE = REPO / "knowledge" / "stages.yaml"


@pytest.fixture(scope="module")
def embeddings() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


@pytest.fixture(scope="module")
def detector(embeddings) -> EnsembleStageDetector:
    return EnsembleStageDetector(load_journey(STAGES_FILE), embeddings)


def kinds(result) -> list[str]:
    return [e["type"] for e in result.evidence]


@pytest.mark.parametrize("vague", ["ok cool thanks!", "hello there", "hmm ok", "alright, thank you", "great"])
def test_vague_follow_up_keeps_the_stage(detector, vague):
    history = ("How much is the Pro plan for 8 staff?",)
    result = detector.detect(StageSignals(message=vague, history=history, previous="decision"))
    assert result.name == "decision"
    assert result.previous == "decision" and not result.changed
    assert "kept_previous" in kinds(result)


def test_clear_move_changes_the_stage(detector):
    result = detector.detect(
        StageSignals(message="I'd like to buy 10 seats", history=("what is lumio?",), previous="awareness")
    )
    assert result.name == "decision" and result.changed
    assert "transition" in kinds(result)
    moved = detector.detect(
        StageSignals(message="my calendar sync stopped working since yesterday", previous="decision")
    )
    assert moved.name == "support"


@pytest.mark.parametrize(
    ("message", "stage"),
    [
        ("How much does the pro plan cost?", "decision"),
        ("what does your company actually do", "awareness"),
        ("I was charged twice this month!!", "support"),
        ("how do I cancel my subscription", "renewal"),
        ("how do i import my client list after signing up", "onboarding"),
        ("I'd love to refer a friend, is there a reward?", "advocacy"),
    ],
)
def test_clear_single_messages(detector, message, stage):
    assert detector.detect(StageSignals(message=message)).name == stage


def test_page_rule_counts(detector):
    plain = detector.detect(StageSignals(message="quick question about your plans"))
    on_pricing = detector.detect(
        StageSignals(message="quick question about your plans", page_url="https://www.lumio.example/pricing")
    )
    assert on_pricing.scores["decision"] > plain.scores["decision"]
    assert any(e["type"] == "page_rule" and e["stage"] == "decision" for e in on_pricing.evidence)
    hello = detector.detect(StageSignals(message="hello", page_url="https://help.lumio.example/support"))
    assert hello.name == "support" and hello.confidence <= 0.5


def test_known_customer_lowers_pre_purchase_stages(detector):
    anonymous = detector.detect(StageSignals(message="tell me about the reports"))
    customer = detector.detect(StageSignals(message="tell me about the reports", known_customer=True))
    for stage in ("awareness", "consideration", "decision"):
        assert customer.scores[stage] < anonymous.scores[stage]
    assert "known_customer" in kinds(customer)


def test_evidence_is_readable(detector):
    result = detector.detect(StageSignals(message="is there a discount if I pay annually?"))
    examples = [e for e in result.evidence if e["type"] == "example"]
    assert len(examples) == 3
    assert all(e["stage"] == result.name and e["text"] and -1 <= e["similarity"] <= 1 for e in examples)
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.confidence == pytest.approx(result.scores[result.name])


def test_configuration_changes_take_effect(tmp_path, embeddings):
    config = tmp_path / "stages.yaml"
    config.write_text(
        textwrap.dedent(
            """
            stages:
              - name: browsing
                examples: ["what do you sell", "tell me about your company", "what is this shop"]
              - name: buying
                examples: ["how much is shipping", "I want to order two", "do you take paypal"]
              - name: after-sales
                examples: ["my parcel never arrived", "the item is broken", "I want to return my order"]
            page_rules:
              - pattern: /checkout
                stage: buying
            neutral: ["ok", "thanks"]
            """
        )
    )
    journey = load_journey(config)
    detector = EnsembleStageDetector(journey, embeddings)
    assert detector.detect(StageSignals(message="where is my package, it's late")).name == "after-sales"
    assert detector.detect(StageSignals(message="thanks", page_url="https://shop.example/checkout")).name == "buying"
    assert set(detector.detect(StageSignals(message="hi")).scores) == {"browsing", "buying", "after-sales"}
    config.write_text("stages:\n  - name: only\n    examples: [x]\n")
    with pytest.raises(StageConfigError, match="at least two stages"):
        load_journey(config)


def test_corrections_are_learned_without_restart(detector):
    message = "the flux capacitor thing on my dashboard"
    before = detector.detect(StageSignals(message=message))
    target = "advocacy" if before.name != "advocacy" else "onboarding"
    detector.set_learned([(message, target)])
    assert detector.detect(StageSignals(message=message)).name == target


def test_evidence_from_learned_examples_is_marked_and_kept_from_visitors(embeddings):
    journey = load_journey(STAGES_FILE)
    configured = {text for stage in journey.stages for text in stage.examples}
    detector = EnsembleStageDetector(journey, embeddings)
    learned = "my calendar sync stopped working and bookings are missing, ana.lopez@example.com"
    detector.set_learned([(learned, "support")])
    result = detector.detect(StageSignals(message="my calendar sync stopped working and bookings are missing"))
    assert result.name == "support"
    quoting = [e for e in result.evidence if e.get("text") == learned]
    assert {e["type"] for e in quoting} == {"example", "correction"} and all(e["learned"] for e in quoting)
    shown = visitor_evidence(result.evidence)
    examples = [e["text"] for e in shown if e["type"] == "example"]
    assert len(examples) == TOP_K and set(examples) <= configured, "visitors still get the nearest configured examples"
    assert learned not in json.dumps(shown) and "correction" not in [e["type"] for e in shown]


def test_eval_stages_command(tmp_path):
    cases = [
        {"messages": [{"role": "user", "content": "How much does the pro plan cost?"}], "stage": "decision"},
        {"messages": [{"role": "user", "content": "my invoice is wrong"}], "stage": "support"},
        {
            "messages": [
                {"role": "user", "content": "how do I cancel?"},
                {"role": "assistant", "content": "Go to Settings, then Billing."},
                {"role": "user", "content": "ok thanks"},
            ],
            "stage": "renewal",
        },
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    env = base_env(tmp_path)
    result = run_cli("eval-stages", str(path), env=env)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == "accuracy: 1.000 (n=3)"
    assert "confusion" in result.stdout and "expected calibration error" in result.stdout
    as_json = json.loads(run_cli("eval-stages", str(path), "--json", env=env).stdout)
    assert as_json["n"] == 3 and as_json["per_stage"]["decision"]["recall"] == 1.0
    path.write_text('{"messages": [{"role": "user", "content": "x"}], "stage": "nirvana"}\n')
    bad = run_cli("eval-stages", str(path), env=env)
    assert bad.returncode == 2 and "stage 'nirvana' is not one of" in bad.stderr
