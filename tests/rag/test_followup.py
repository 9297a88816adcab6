"""Follow-up resolution without a language model: pronouns, ellipses and bare question words."""

from __future__ import annotations

import pytest

from rag.retrieval.followup import PriorTurn, history_from_exchanges, resolve_followup

ALIPIO = [PriorTurn(question="Who is Alipio?", quotes=("the killings of Alejandro Borda Casafranca, alias Alipio",))]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("when was he killed?", "when was Alipio killed?"),
        ("what about Gabriel?", "Who is Gabriel?"),
        ("And how about Gabriel", "Who is Gabriel?"),
        ("what was his alias?", "what was Alipio's alias?"),
        ("and when was he killed?", "when was Alipio killed"),
        ("why?", "why Alipio?"),
    ],
)
def test_resolve_followup_rewrites_into_standalone_query(message: str, expected: str) -> None:
    resolved = resolve_followup(message, ALIPIO)
    assert resolved.followup is True
    assert resolved.text == expected
    assert "Alipio" in resolved.context


@pytest.mark.parametrize("message", ["What is the capital of France?", "Who heads the Special VRAEM Commando unit?"])
def test_resolve_followup_standalone_message_is_left_alone(message: str) -> None:
    resolved = resolve_followup(message, ALIPIO)
    assert resolved.followup is False
    assert resolved.text == message and resolved.context == ""


def test_resolve_followup_without_history_is_the_message() -> None:
    assert resolve_followup("  when was he killed? ", []).text == "when was he killed?"


def test_resolve_followup_pronoun_without_entity_uses_topic() -> None:
    history = [PriorTurn(question="What is the guerrillas' main source of funding?")]
    resolved = resolve_followup("what are authorities doing about it?", history)
    assert "main source of funding" in resolved.text


def test_history_from_exchanges_chains_followups() -> None:
    history = history_from_exchanges([("Who is Alipio?", []), ("when was he killed?", []), ("what about Gabriel?", [])])
    assert [t.standalone for t in history] == ["Who is Alipio?", "when was Alipio killed?", "when was Gabriel killed?"]
