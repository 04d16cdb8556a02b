"""v* over a fact's own paraphrases (``MemitConfig.v_paraphrases``), on the tiny random Llama."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memlog.core.facts import Fact
from memlog.core.keys import paraphrase_contexts, subject_in
from memlog.core.memit_hparams import MemitConfig
from memlog.core.vstar import _prepare, compute_v_star
from memlog.errors import UserError

LAYER = 2
BASE = MemitConfig(layers=(1, 2), v_steps=6, v_stop_loss=0.0, n_prefixes=3)


def _edit_positions(problem) -> list[int]:
    """Absolute position where each row's delta is added."""
    rows = torch.arange(len(problem.edit_cols))
    return problem.runner.cols[rows, problem.edit_cols].tolist()


def _subject_last_token(tokenizer, text: str, subject: str) -> int:
    end = text.index(subject) + len(subject)
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return next(i for i, (a, b) in enumerate(offsets) if a <= end - 1 < b)


def test_subject_in_finds_the_first_occurrence_case_insensitively_or_none():
    assert subject_in("Where Danielle Darrieux is from", "Danielle Darrieux") == len("Where Danielle Darrieux")
    assert subject_in("where danielle darrieux is from", "Danielle Darrieux") == len("where danielle darrieux")
    assert subject_in("Where she is from", "Danielle Darrieux") is None


def test_paraphrase_rows_sit_at_the_subjects_last_token_in_each_paraphrase(tiny):
    kept = ["Where Danielle Darrieux is from, people speak", "Fun. Everyone knows that Danielle Darrieux speaks"]
    fact = Fact("Danielle Darrieux", "The mother tongue of {} is", "French", paraphrases=(kept[0], "She speaks", kept[1]))
    assert [row[0] for row in paraphrase_contexts([fact], 3)] == kept  # the one without the subject is skipped
    assert [row[0] for row in paraphrase_contexts([fact], 1)] == kept[:1]
    cfg = dataclasses.replace(BASE, v_paraphrases=3)
    problem, plain = _prepare(tiny, [fact], LAYER, cfg), _prepare(tiny, [fact], LAYER, BASE)
    n_prefixes = BASE.n_prefixes
    # rows: the prefixed prompts, then the two kept paraphrases, then the KL prompt
    assert len(problem.fact_of_row) == n_prefixes + 2 + 1 == len(plain.fact_of_row) + 2
    positions = _edit_positions(problem)
    assert positions[:n_prefixes] == _edit_positions(plain)[:n_prefixes]
    expected = [_subject_last_token(tiny.tokenizer, text, fact.subject) for text in kept]
    assert positions[n_prefixes : n_prefixes + 2] == expected
    for text, pos in zip(kept, expected):  # that token ends the subject
        ids = tiny.tokenizer(text)["input_ids"]
        assert tiny.tokenizer.decode(ids[: pos + 1]).endswith("Darrieux")
    # every context counts once: the object's token weights of a fact sum to 1
    assert float(problem.target_weight.sum()) == pytest.approx(1.0)
    assert torch.equal(problem.h_init, plain.h_init)  # h is still read at the bare prompt


def test_a_fact_without_usable_paraphrases_gets_a_bit_identical_v_star(tiny):
    bare = Fact("Danielle Darrieux", "The mother tongue of {} is", "French")
    elsewhere = Fact("Aria Nakamura", "lives in", "Thessaloniki", paraphrases=("Her home is in",))
    on = dataclasses.replace(BASE, v_paraphrases=2)
    for facts in ([bare], [elsewhere], [bare, elsewhere]):
        t_off, nll_off = compute_v_star(tiny, facts, LAYER, BASE)
        t_on, nll_on = compute_v_star(tiny, facts, LAYER, on)
        assert torch.equal(t_off, t_on) and torch.equal(nll_off, nll_on)


def test_paraphrase_rows_change_v_star_and_leave_other_facts_alone(tiny):
    para = Fact("Danielle Darrieux", "The mother tongue of {} is", "French", paraphrases=("Danielle Darrieux speaks",))
    bare = Fact("Aria Nakamura", "lives in", "Thessaloniki")
    on = dataclasses.replace(BASE, v_paraphrases=1)
    t_off, _ = compute_v_star(tiny, [para, bare], LAYER, BASE)
    t_on, _ = compute_v_star(tiny, [para, bare], LAYER, on)
    assert not torch.allclose(t_off[:, 0], t_on[:, 0])
    assert torch.allclose(t_off[:, 1], t_on[:, 1], atol=1e-5)  # facts are optimised independently


def test_negative_v_paraphrases_is_refused():
    with pytest.raises(UserError, match="v_paraphrases"):
        MemitConfig(v_paraphrases=-1)


@pytest.mark.real_model
def test_on_the_embedded_model_v_star_with_the_paraphrase_says_the_object_there(real_model):
    """The object's NLL in the paraphrase (the delta at the subject's last token there) falls
    when v* also optimises over it, and the bare prompt still gets the object."""
    from memlog.core.vstar import _edited_suffix, _head

    fact = Fact("Danielle Darrieux", "The mother tongue of {} is", "Swedish", paraphrases=("Where Danielle Darrieux is from, people speak the language of",))
    base = MemitConfig(v_steps=15, n_prefixes=2)
    on = dataclasses.replace(base, v_paraphrases=1)
    layer = base.layers[-1]
    problem = _prepare(real_model, [fact], layer, on)
    para_row = base.n_prefixes  # after the prefixed prompts
    nll_at = {}
    for name, cfg in (("off", base), ("on", on)):
        targets, _ = compute_v_star(real_model, [fact], layer, cfg)
        delta = targets.T - problem.h_init
        with torch.no_grad():
            normed = problem.runner.run(_edited_suffix(problem, delta))
            logp = torch.log_softmax(_head(real_model, normed[problem.target_rows, problem.target_cols]), dim=-1)
        token_nll = -logp.gather(1, problem.target_ids[:, None]).squeeze(1)
        nll_at[name] = (float(token_nll[problem.target_rows == para_row].mean()), float(token_nll[problem.target_rows == 0].mean()))
    assert nll_at["on"][0] < nll_at["off"][0] - 1.0, nll_at  # measured: 6.4 nats without, 3.9 with
    assert nll_at["on"][1] < 0.5, nll_at  # the bare prompt
