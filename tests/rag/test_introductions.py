"""benchmarks/introductions.py: the short "Who is X?" training questions about names that occur once."""

from __future__ import annotations

import random

from benchmarks.introductions import introductions, names_in, question_for

ARTICLE_A = (
    "The river rises in the Alps. Its main port is Basel, where the ships of the Upper Rhine Company load. "
    "Later the river passes Basel again. "
    "The company was founded by Hans Meier, who ran it until he died in 1921. The river is wide."
)
ARTICLE_B = "Rotterdam handles most of the cargo. The port of Rotterdam is the largest in Europe."


def test_names_leave_out_sentence_openers_common_words_and_possessives() -> None:
    sentence = "In 1901 Hans Meier met the Mayor of Basel and Europe's Bank in March."
    assert names_in(sentence) == ["Hans Meier", "Mayor", "Basel"]  # "In" opens it, "March" is a month
    assert names_in(sentence, frozenset({"mayor"})) == ["Hans Meier", "Basel"]  # also written in lower case


def test_only_names_of_exactly_one_sentence_are_asked_about() -> None:
    items = introductions([("A", ARTICLE_A), ("B", ARTICLE_B)])
    asked = {it["answer"]: it for it in items}
    # Basel and Rotterdam occur in two sentences each: no single sentence introduces them.
    assert set(asked) == {"Alps", "Upper Rhine Company", "Hans Meier", "Europe"}
    assert asked["Europe"]["article"] == "B" and asked["Europe"]["passage"] == ARTICLE_B
    assert asked["Upper Rhine Company"]["question"] in {"What is Upper Rhine Company?", "What was Upper Rhine Company?"}
    assert asked["Hans Meier"]["question"] in {"Who is Hans Meier?", "Who was Hans Meier?"}  # "he", "died"


def test_question_form_follows_the_sentence() -> None:
    rng = random.Random(0)
    assert question_for("Moscone Center", "The game was held at Moscone Center.", rng).startswith("What ")
    assert question_for("Alan Turing", "Alan Turing said he was right.", rng).startswith("Who ")
