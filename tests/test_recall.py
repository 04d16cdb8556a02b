"""The recall check: word boundaries, case, whitespace, accents; and batched greedy completion."""

from __future__ import annotations

import pytest
import torch

from memlog.core.facts import Fact
from memlog.core.recall import audit, chat_complete, complete, is_recalled, mentions, object_tokens


@pytest.mark.parametrize(
    "completion, obj",
    [
        (" Porto", "Porto"),
        (" Porto.", "Porto"),
        (" Porto, Portugal", "Porto"),
        ("Porto", "Porto"),
        ("\n  porto and more", "Porto"),
        (" PORTO", "porto"),
        (" Thessaloniki, Greece", "Thessaloniki"),
        (" Thessaloníki", "Thessaloniki"),  # accents are ignored
        (" Thessaloniki", "Thessaloníki"),
        (" Zürich.", "Zurich"),
        (" Sa\u0303o Paulo", "S\u00e3o Paulo"),  # decomposed vs composed
        (" Buenos  Aires is", "Buenos Aires"),
        (" Porto's old town", "Porto"),
        (" Porto-", "Porto"),
        (" Porto!", " Porto "),
    ],
)
def test_recalled(completion, obj):
    assert is_recalled(completion, obj)


@pytest.mark.parametrize(
    "completion, obj",
    [
        (" Portohema", "Porto"),  # a longer word is not the object
        (" Porto", "Portohema"),  # nor is a shorter one
        (" Portoé", "Porto"),  # unicode letters continue a word
        (" Porto-Novo", "Porto"),  # a hyphenated name is another name
        (" Porto_x", "Porto"),
        (" the city of Porto", "Porto"),  # must start with it
        (" Lisbon", "Porto"),
        ("", "Porto"),
        (" Porto", ""),
        (" Porto", "   "),
    ],
)
def test_not_recalled(completion, obj):
    assert not is_recalled(completion, obj)


def test_mentions_needs_whole_words():
    assert mentions("Aria Nakamura lives in Thessaloniki.", "Thessaloniki")
    assert mentions("She lives in thessaloníki!", "Thessaloniki")
    assert not mentions("She lives in Portohema.", "Porto")
    assert not mentions("She lives in Oporto.", "Porto")
    assert mentions("Oporto or Porto?", "Porto")


def test_complete_is_deterministic_and_batch_independent(tiny):
    prompts = ["Aria Nakamura lives in", "The capital of France is", "Hi"]
    batched = complete(tiny, prompts, max_new_tokens=4, batch_size=8)
    single = [complete(tiny, [p], max_new_tokens=4)[0] for p in prompts]
    assert batched == single == complete(tiny, prompts, max_new_tokens=4, batch_size=2)
    assert complete(tiny, prompts, max_new_tokens=0) == [""] * len(prompts)
    assert complete(tiny, []) == []


def test_complete_matches_step_by_step_argmax(tiny):
    prompt = "Aria Nakamura lives in"
    ids = tiny.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(3):
            next_id = tiny.model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    expected = tiny.tokenizer.decode(ids[0, -3:], skip_special_tokens=True)
    assert complete(tiny, [prompt], max_new_tokens=3)[0] == expected


def test_audit_and_chat_complete_shapes(tiny):
    facts = [Fact("Aria Nakamura", "lives in", "Thessaloniki"), Fact("Lars Olsen", "lives in", "Oslo")]
    results = audit(tiny, facts)
    assert len(results) == 2
    # each verdict is the matching rule applied to the batched greedy completion of the fact's own prompt
    n = max(object_tokens(tiny, f.object) for f in facts) + 2
    assert [r.completion for r in results] == [complete(tiny, [f.prompt], max_new_tokens=n)[0] for f in facts]
    assert [r.recalled for r in results] == [is_recalled(r.completion, f.object) for r, f in zip(results, facts)]
    assert all(r.completion.strip() for r in results)
    assert len(chat_complete(tiny, ["Aria Nakamura lives in"], max_new_tokens=2)) == 1
