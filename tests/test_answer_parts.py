"""The parts of an offline answer: reading the question, follow-ups, the vocabulary, units, the evaluation format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import base_env, run_cli

from app.answer.answerable import (
    asked_about,
    focus_words,
    key_weight,
    minor_terms,
    question_clause,
    specific,
    verb_like,
)
from app.answer.composer import compose, split_units
from app.answer.evaluate import AnswerCase, AnswerEvalError, judge, load_cases
from app.answer.followup import leans_on_context, resolve
from app.answer.question import classify, expand_shorthand, head_count, read_question, terms, total_for
from app.kb.store import Hit
from app.kb.vocabulary import Vocabulary


def hit(text: str, section: str = "Section", doc_id: str = "doc") -> Hit:
    return Hit(f"{doc_id}#0", doc_id, "Title", section, "https://help.example/doc#section", (), text, 0.6, 0.6)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("how much is pro", "price"),
        ("whats the price of the business plan", "price"),
        ("how long does a refund take", "duration"),
        ("how do i connect outlook", "howto"),
        ("can i pause my plan", "yesno"),
        ("what happens if i dont pay after the trial", "happens"),
        ("why was i charged twice", "why"),
        ("lumio vs bookbee", "compare"),
        ("which plan has sso", "which"),
        ("do reminders really cut no shows or is that just marketing talk", "yesno"),
    ],
)
def test_the_kind_of_answer_a_question_asks_for(question, kind):
    assert classify(question) == kind


def test_a_comparison_knows_its_sides():
    assert read_question("pro vs business, whats the difference").sides == ("pro", "business")


def test_shorthand_is_written_out():
    assert expand_shorthand("hw much r u charging per appt") == "how much are you charging per appointment"
    assert expand_shorthand("pro for 3 ppl, abt 2 wks") == "pro for 3 people, about 2 weeks"  # "ppl" is not a name


@pytest.mark.parametrize(
    ("message", "leans"),
    [
        ("and for 3 people?", True),
        ("ok how do i set that up", True),
        ("is it on starter", True),
        ("we're 10 therapists", True),
        ("how long till its approved", True),
        ("how do I cancel?", False),
        ("seriously how do i export", False),  # a word of filler before the question word: still a question
        ("how much does the pro plan cost per month", False),
    ],
)
def test_which_messages_lean_on_the_conversation(message, leans):
    assert leans_on_context(message) is leans


def test_the_thing_the_previous_reply_spoke_of_is_a_reference_back():
    reply = "Your export is ready within an hour; we email you a download link."
    assert leans_on_context("how long is the link good for", reply)
    assert not leans_on_context("how long is the link good for")  # nothing spoke of a link: it stands alone
    assert not leans_on_context("how long is the trial", reply)  # the reply did not speak of a trial


def test_a_follow_up_is_read_with_the_question_the_conversation_is_about():
    text, topic = resolve("ok how do i set that up", ["do you have a waitlist", "is it on starter"])
    assert topic == "do you have a waitlist" and text.endswith("ok how do i set that up")
    assert resolve("how do I cancel?", ["my sms reminders are not sent"]) == ("how do I cancel?", None)


def test_vocabulary_corrects_misspellings_to_the_documents_words_only():
    vocabulary = Vocabulary(["Connect your calendar to your account", "Cancel your plan from Billing"])
    assert vocabulary.normalise("how do i conect my calender to my acount") == (
        "how do i connect my calendar to my account"
    )
    assert vocabulary.unknown("can my clients pay in bitcoin") == ["clients", "pay", "bitcoin"]
    assert "bitcoin" in Vocabulary(["Clients pay by card"]).unknown("can my clients pay in bitcoin")
    assert Vocabulary(["x"]).unknown("see book.mysalon.com or mail me@salon.example") == ["mail"]


def test_a_missing_thing_asked_about_weighs_more_than_filler():
    assert asked_about("can my clients pay in bitcoin") == {"bitcoin"}
    assert {"iso", "27001"} <= asked_about("are you ISO 27001 certified?")
    assert verb_like("swamped") and not verb_like("kiosk")
    assert key_weight("hubspot", closest=0.3) > 0.9
    assert key_weight("yesterday", closest=0.3) < 0.2  # everyday English
    assert key_weight("doctors", closest=0.85) == 0.0  # the documents have a word that means the same


def test_the_question_clause_leaves_out_who_is_asking_and_from_where():
    asked = "we're a little dental office in leeds. do you sell gift cards?"
    assert question_clause(asked) == "do you sell gift cards?"
    assert question_clause("my booking page is blank on squarespace") == ""  # a statement asks nothing
    # a clause that only points back asks about the one before it
    assert question_clause("lumio vs zenplanner, which is better") == "lumio vs zenplanner which is better"
    words = focus_words("im a farrier in york, can i take payments by cheque")
    assert "cheque" in words and "farrier" not in words and "york" not in words
    assert "lisbon" not in focus_words("yoga place here in lisbon - do you support multibanco?")
    # where, with an article or "round": "in the basement", "all round norwich"
    assert "basement" not in focus_words("does the app work when i have no signal in the basement")
    assert "norwich" not in focus_words("i drive all round norwich, can i book at their house?")


def test_a_specific_missing_word_is_rare_nounlike_and_unlike_any_kb_word():
    assert specific("cheque", closest=0.4) and specific("franchisor", closest=0.5)
    assert not specific("cheque", closest=0.8)  # the knowledge base has a word that means the same
    assert not specific("swamped", closest=0.3)  # a verb form: filler around the question
    assert not specific("2025", closest=0.3) and not specific("people", closest=0.3)  # a number; everyday English
    # a verb's -s form, an adjective with a verb form, a function word
    assert not specific("reckons", closest=0.3) and not specific("fancy", closest=0.3)
    assert not specific("ups", closest=0.3) and "onto" not in terms("how do i get it onto my site")


def test_what_is_asked_outweighs_who_asks_when_choosing_the_passage():
    import numpy as np

    hits = [
        hit("Tutors can run summer courses online with video links.", "Tutoring", "tutors"),
        hit("You can pause your plan for up to 3 months.", "Pause your plan", "pause"),
    ]
    same = lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2  # noqa: E731 - meaning ties: terms decide
    asked = "im a tutor in summer, can i pause"
    question = replace(read_question(asked), minor=minor_terms(asked, focus_words(asked)))
    assert question.minor == set(terms("tutor summer"))
    chosen = compose(question=question, question_vector=np.ones(4) / 2, hits=hits, embed=same, idf=lambda t: 1.0)
    assert chosen.doc_ids[0] == "pause", chosen.text
    unweighted = compose(
        question=read_question(asked), question_vector=np.ones(4) / 2, hits=hits, embed=same, idf=lambda t: 1.0
    )
    assert unweighted.doc_ids[0] == "tutors"  # without the weighting, who asks would have chosen


def test_a_price_question_gets_the_price_for_the_billing_period_it_asks_about():
    import numpy as np

    hits = [
        hit("The annual price works out at $23.20 per staff calendar per month on Pro, billed once a year.", "A", "a"),
        hit("The Pro plan costs $29 per staff calendar per month.", "P", "p"),
    ]
    same = lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2  # noqa: E731 - meaning ties: shape decides

    def lead(asked: str) -> str:
        composed = compose(
            question=read_question(asked), question_vector=np.ones(4) / 2, hits=hits, embed=same, idf=lambda t: 1.0
        )
        return composed.text.split("\n")[0]

    assert lead("how much is pro per staff calendar?").startswith("The Pro plan costs $29")
    assert lead("how much is pro per staff calendar if i pay yearly?").startswith("The annual price")


def test_a_short_decisive_sentence_leads_into_the_next():
    units = split_units([hit("No. One account is on one plan, and every staff calendar gets the same features.")])
    sentences = [u.text for u in units if u.kind == "sentence"]
    assert sentences == ["No. One account is on one plan, and every staff calendar gets the same features."]


def test_meta_sentences_are_not_units_and_tables_give_rows():
    text = "This article explains plans.\n\n| Plan | Price |\n|---|---|\n| Pro | $29 |\n| Business | $49 |"
    units = split_units([hit(text)])
    assert not any("This article" in u.text for u in units)
    assert [u.text for u in units if u.kind == "row"] == ["**Pro**: Price: $29", "**Business**: Price: $49"]


def test_a_per_person_price_is_totalled_for_the_count_asked():
    assert head_count("and for 4 people?") == 4 and head_count("do you have 2fa") is None
    assert total_for(4, "Starter costs $12 per staff calendar per month.") == (
        "For 4 staff calendars, that comes to 4 x $12 = $48 per month."
    )
    assert total_for(4, "Starter costs $12 a month.") == ""


def test_an_answer_case_is_judged_by_its_facts_and_a_citation():
    case = AnswerCase(question="how much is pro", answerable=True, facts=(r"\$29",))
    assert judge(case, {"reply": "Pro is $29 [1]", "sources": [{"id": "pricing/plans"}]}).correct
    assert not judge(case, {"reply": "Pro is $29", "sources": []}).correct
    assert not judge(case, {"reply": "Pro is great [1]", "sources": [{"id": "pricing/plans"}]}).correct
    unanswerable = AnswerCase(question="bitcoin?", answerable=False)
    declined = {"reply": "not covered", "sources": [], "handoff": {"suggested": True, "reason": "no_answer"}}
    assert judge(unanswerable, declined).correct
    assert not judge(unanswerable, {**declined, "handoff": {"suggested": True, "reason": "support"}}).correct


def test_a_bad_answer_file_names_its_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    good = '{"question": "ok", "answerable": true, "facts": ["$29"]}'
    path.write_text(good + '\n{"question": "x", "answerable": true, "facts": ["("]}\n')
    with pytest.raises(AnswerEvalError, match=r"bad.jsonl:2: fact '\(' is not a valid regular expression"):
        load_cases(path)
    path.write_text('{"question": "ok", "answerable": true}\n')
    with pytest.raises(AnswerEvalError, match="needs at least one fact"):
        load_cases(path)


def test_eval_answers_prints_the_figures_last(make_data_dir, tmp_path: Path):
    cases = [
        {"question": "how much is pro", "answerable": True, "facts": [r"\$29"], "stage": "decision"},
        {
            "question": "and for 4 people?",
            "history": [{"role": "user", "content": "how much is starter"}],
            "answerable": True,
            "facts": [r"\$48"],
            "stage": "decision",
        },
        {"question": "are you ISO 27001 certified?", "answerable": False, "facts": [], "stage": "consideration"},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in cases))
    result = run_cli("eval-answers", str(path), "--errors", env=base_env(make_data_dir()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "correct: 1.000 (n=2) declined: 1.000 (n=1)", result.stdout
    assert "decision" in result.stdout and "follow-ups correct: 1.000 (n=1)" in result.stdout
