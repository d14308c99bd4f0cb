"""A scripted research model for evaluation tests (search once, then answer from the question),
and questions over the mini world it answers."""

from __future__ import annotations

from typing import Any

from deepresearcher.data.paper_format import QARecord
from scripted import answer_turn, search_turn

QUESTIONS = [
    ("world_1", "Where was the founder of the Brackenhold Institute born?", ["Tarrowmere"], "wiki2"),
    ("world_2", "In which country is Tarrowmere?", ["Lenivar"], "wikihop"),
    ("world_3", "Who founded the Brackenhold Institute?", ["Velmora Quist", "Quist"], "wikihop"),
]
# What the scripted model answers, by a word of the question.
ANSWERS = {"born": "Tarrowmere", "country": "Lenivar", "founded": "Velmora Quist"}


def make_records(n: int | None = None) -> list[QARecord]:
    """The three questions, repeated with fresh ids up to ``n``."""
    n = n or len(QUESTIONS)
    out = []
    for i in range(n):
        qid, question, golds, source = QUESTIONS[i % len(QUESTIONS)]
        out.append(QARecord(id=f"{qid}_{i}", question=question, golds=golds, data_source=source,
                            split="test"))
    return out


def research_turn(prompt_text: str) -> str:
    """Search on the first turn; answer once a tool response is in the prompt."""
    question = prompt_text.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
    if "<tool_response>" not in prompt_text:
        return search_turn(question.split("?")[0][:60])
    for word, answer in ANSWERS.items():
        if word in question:
            return answer_turn(answer)
    return answer_turn("unknown")


def server_script(request: Any) -> str:
    """``OpenAICompatServer(script=...)``: the same model on the completions endpoint."""
    return research_turn(str(request.json.get("prompt", "")))
