"""The stage detector's behaviours: hysteresis, clear moves, page rules, customers, evidence, configuration,
unsure turns, the stages of nearby knowledge passages, the journey's boundaries and the calibration."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import textwrap

import numpy as np
import pytest
from conftest import REPO, base_env, run_cli
from fake_llm import stage_vote_or

from app.embeddings import LocalMiniLMEmbeddings
from app.stages.calibration import fit_temperature
from app.stages.config import StageConfigError, load_journey
from app.stages.detector import TOP_K, VAGUE_SIMILARITY, EnsembleStageDetector, StageSignals
from app.stages.evidence import visitor_evidence
from app.stages.passages import SIMILARITY_FLOOR, PassageSignal, passage_logits

STAGES_FILE = REPO / "knowledge" / "stages.yaml"


@pytest.fixture(scope="module")
def embeddings() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


@pytest.fixture(scope="module")
def detector(embeddings, ingested) -> EnsembleStageDetector:
    """The configured detector, its example vectors and fit read from the session's ingested cache."""
    return EnsembleStageDetector(load_journey(STAGES_FILE), embeddings, cache_dir=ingested / "cache")


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


def test_a_conversation_past_the_purchase_counts_as_a_customer(detector):
    """Once the conversation is in a stage after the purchase, the visitor is treated as a known customer."""
    message = "tell me about the reports"
    after = detector.detect(StageSignals(message=message, history=("my invoice is wrong",), previous="support"))
    told = detector.detect(
        StageSignals(message=message, history=("my invoice is wrong",), previous="support", known_customer=True)
    )
    assert after.scores == pytest.approx(told.scores), "the conversation says 'customer' as surely as the host page"
    assert any(e["type"] == "known_customer" and "past the purchase" in e["detail"] for e in after.evidence)
    before = detector.detect(StageSignals(message=message, history=("what is lumio?",), previous="awareness"))
    assert "known_customer" not in kinds(before), "a conversation before the purchase says nothing of the kind"


@pytest.mark.parametrize(
    "message",
    ["the boiler pressure keeps dropping below one bar", "our greenhouse heater trips the fuse every night"],
)
def test_a_clear_message_far_from_every_example_is_not_vague(detector, embeddings, message):
    """Regression: a clear message in the words of a business the examples do not cover was called vague (no example
    within VAGUE_SIMILARITY) and kept the conversation's stage, or fell back to awareness on a first turn."""
    assert float((detector._fit.vectors @ embeddings.embed_array([message])[0]).max()) < VAGUE_SIMILARITY
    first = detector.detect(StageSignals(message=message))
    assert first.name == "support" and not first.uncertain and "vague" not in kinds(first)
    moved = detector.detect(StageSignals(message=message, history=("do you install them?",), previous="consideration"))
    assert moved.name == "support" and moved.changed and "kept_previous" not in kinds(moved)


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


def test_stage_fit_kept_in_the_cache_gives_the_same_detector(embeddings, ingested, tmp_path):
    for vectors in (ingested / "cache").glob("stage-vectors-*.npy"):  # the examples' vectors, not their fit
        shutil.copy(vectors, tmp_path)
    journey = load_journey(STAGES_FILE)
    fresh = EnsembleStageDetector(journey, embeddings, cache_dir=tmp_path)
    stored = list(tmp_path.glob("stage-fit-*.npz"))
    assert len(stored) == 1, "the fit of the configured examples is kept"
    stored[0].touch()
    before = stored[0].stat().st_mtime_ns
    cached = EnsembleStageDetector(journey, embeddings, cache_dir=tmp_path)
    assert stored[0].stat().st_mtime_ns == before and cached.fitted == fresh.fitted
    for message in ("How much does the pro plan cost?", "tell me about the reports", "my invoice is wrong"):
        one, two = fresh.detect(StageSignals(message=message)), cached.detect(StageSignals(message=message))
        assert (one.name, one.confidence, one.scores) == (two.name, two.confidence, two.scores)
    cached.set_learned([("the zeppelin hangar is double booked", "support")])
    assert list(tmp_path.glob("stage-fit-*.npz")) == stored, "a fit with staff corrections is not kept"
    assert cached.fitted["examples"] == fresh.fitted["examples"] + 1


def test_eval_stages_command(tmp_path, make_data_dir):
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
    env = base_env(make_data_dir())  # the labelled examples' vectors already cached
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


def test_eval_stages_llm_votes_only_on_unsure_turns(tmp_path, make_data_dir, fake_llm):
    unsure = "tell me about the reports"
    cases = [
        {"messages": [{"role": "user", "content": "How much does the pro plan cost?"}], "stage": "decision"},
        {"messages": [{"role": "user", "content": unsure}], "stage": "support"},
        {"messages": [{"role": "user", "content": "thanks!"}], "stage": "awareness"},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    fake_llm.reply = stage_vote_or("not a vote", table={unsure: "support"})
    llm = {"OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "k", "JOURNEY_LLM_MODEL": "fake-model"}
    env = base_env(make_data_dir(), **llm)
    voted = run_cli("eval-stages", str(path), "--llm", env=env)
    assert voted.returncode == 0, voted.stderr
    assert "LLM stage votes asked: 1 of 3 turns (0.333)" in voted.stdout
    asked = [r["messages"][-1]["content"] for r in fake_llm.requests if r.get("response_format")]
    assert len(asked) == 1 and unsure in asked[0], "only the unsure turn was voted on"
    assert voted.stdout.strip().splitlines()[-1].startswith("accuracy: "), "the figures still end with the accuracy"
    always = run_cli("eval-stages", str(path), "--llm", env={**env, "JOURNEY_LLM_STAGE_BELOW": "1.01"})
    assert "LLM stage votes asked: 2 of 3 turns" in always.stdout, "never small talk, even when always asked"
    no_llm = run_cli("eval-stages", str(path), "--llm", env=base_env(make_data_dir()))
    assert no_llm.returncode == 2 and "--llm needs an LLM: set JOURNEY_LLM, or OPENAI_API_KEY" in no_llm.stderr


# Two stages with the very same examples: a message about them cannot be told apart, so the detector is unsure.
TIED_STAGES = """
stages:
  - name: browsing
    examples: ["what do you sell", "tell me about your company", "what is this shop", "who are you",
      "what kind of products do you have", "is this a real store", "what is your brand about", "where are you based"]
  - name: buying
    examples: &buying ["how much is shipping", "I want to order two", "do you take paypal", "can I pay by card",
      "what does delivery cost", "is there a discount code", "I'd like to buy the blue one", "price with postage?"]
  - name: ordering
    examples: *buying
  - name: after-sales
    examples: ["my parcel never arrived", "the item is broken", "I want to return my order", "wrong size sent",
      "refund please, it arrived damaged", "the zip broke after a week", "tracking hasn't moved in days",
      "you charged me twice"]
"""
TIED = {"buying", "ordering"}


@pytest.fixture(scope="module")
def tied(tmp_path_factory, embeddings) -> EnsembleStageDetector:
    config = tmp_path_factory.mktemp("tied") / "stages.yaml"
    config.write_text(TIED_STAGES)
    return EnsembleStageDetector(load_journey(config), embeddings)


def test_unsure_turn_is_flagged_and_keeps_the_conversations_stage(tied):
    message = "how much is shipping to spain"
    alone = tied.detect(StageSignals(message=message))
    assert alone.name in TIED and alone.confidence < 0.5
    assert alone.uncertain and alone.as_dict()["uncertain"] is True
    assert "uncertain" in kinds(alone)
    kept = tied.detect(StageSignals(message=message, history=("what do you sell?",), previous="browsing"))
    assert kept.name == "browsing" and not kept.changed, "an unsure turn must not move the conversation"
    assert kept.uncertain and kept.confidence == pytest.approx(kept.scores["browsing"])
    assert any(e["type"] == "kept_previous" and e["stage"] == "browsing" for e in kept.evidence)


def test_a_clear_turn_is_not_uncertain(detector):
    result = detector.detect(StageSignals(message="I was charged twice this month!!", previous="decision"))
    assert result.name == "support" and result.changed and result.confidence >= 0.5
    assert not result.uncertain and result.as_dict()["uncertain"] is False


def test_passage_stages_move_a_stage_only_when_similar_enough(tied):
    message = "how much is shipping to spain"
    plain = tied.detect(StageSignals(message=message))
    far = (PassageSignal("help/orders", ("ordering",), SIMILARITY_FLOOR - 0.05),)
    unrelated = tied.detect(StageSignals(message=message, passages=far))
    assert unrelated.scores == pytest.approx(plain.scores), "passages below the floor must add nothing"
    assert "passage" not in kinds(unrelated)
    near = (PassageSignal("help/orders", ("ordering",), 0.9), PassageSignal("help/faq", ("nirvana",), 0.9))
    answered = tied.detect(StageSignals(message=message, passages=near))
    assert answered.name == "ordering" and answered.scores["ordering"] > plain.scores["ordering"]
    evidence = [e for e in answered.evidence if e["type"] == "passage"]
    assert [e["document"] for e in evidence] == ["help/orders"], "a stage the journey lacks lends nothing"


def test_passage_logits_grow_with_similarity_and_are_shared_between_tagged_stages():
    names = ["consideration", "decision", "support"]
    low, _ = passage_logits([PassageSignal("a", ("support",), 0.6)], names)
    high, _ = passage_logits([PassageSignal("a", ("support",), 0.9)], names)
    assert 0 < low[2] < high[2] and low[:2].tolist() == [0, 0]
    shared, evidence = passage_logits([PassageSignal("p", ("consideration", "decision"), 0.9)], names)
    assert shared[0] == shared[1] == pytest.approx(high[2] / 2) and shared[2] == 0
    assert evidence[0]["stages"] == ["consideration", "decision"]
    assert passage_logits([], names)[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("message", "stage"),
    [
        # onboarding (first setup, waiting for what was just bought) vs adoption (using it later)
        ("we signed up on monday, how do we add the rest of the team to the workspace", "onboarding"),
        ("we've used the scheduler for a year, can it also send a survey after each visit?", "adoption"),
        ("the card came in the post this morning, how do i switch it on", "onboarding"),
        ("how do i turn on round-ups on my existing account", "adoption"),
        ("move 100 from my current account to savings", "adoption"),
        # onboarding (on its way) vs support (late, broken or wrong)
        ("the parcel with my new laptop left the warehouse yesterday, when will the courier bring it", "onboarding"),
        ("could you tell me if my loan application has been approved yet", "onboarding"),
        ("the parcel was due last week and the tracking hasn't moved since", "support"),
        ("my replacement bank card still isn't here and it's been three weeks", "support"),
        ("the app crashes every time i try to pay a bill", "support"),
        ("someone took money from my account that i didn't authorise", "support"),
        # consideration (eligibility and fit before buying) vs onboarding and decision
        ("are customers under 18 allowed to open one of your accounts", "consideration"),
        ("before i buy, does the plan work if i live abroad half the year", "consideration"),
        ("does the mattress come in a single size for a kids room", "consideration"),
        ("i'd like to open a savings account, what do i do", "decision"),
    ],
)
def test_journey_boundaries(detector, message, stage):
    assert detector.detect(StageSignals(message=message)).name == stage


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def test_no_labelled_example_repeats_a_held_out_message():
    """Held-out sets measure wording the detector has not seen: no example may (nearly) repeat one of their lines."""
    examples = [_words(e) for stage in load_journey(STAGES_FILE).stages for e in stage.examples]
    repeated = []
    for path in sorted((REPO / "evals").glob("stages*heldout*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for message in json.loads(line)["messages"]:
                text = _words(message["content"])
                words = set(text.split())
                matcher = difflib.SequenceMatcher(None, text)  # ratio() needs both, the quick bounds first
                for example in examples:
                    other = set(example.split())
                    matcher.set_seq1(example)
                    if len(words & other) / max(len(words | other), 1) >= 0.75 or (
                        matcher.real_quick_ratio() >= 0.88 and matcher.quick_ratio() >= 0.88 and matcher.ratio() >= 0.88
                    ):
                        repeated.append((path.name, example))
    assert not repeated


def test_temperature_is_recovered_from_held_out_logits():
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 4.0, size=(4000, 5))
    scaled = logits / 2.0
    probs = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    temperature, nll = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.1)
    assert nll < fit_temperature(logits[:, ::-1], labels)[1]
