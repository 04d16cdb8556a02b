"""Prompt templates (subject anywhere), fact files (JSONL, CounterFact, zsRE), probes in the
log, old-log compatibility, and the eval metrics on a real model."""

from __future__ import annotations

import json

import msgspec
import pytest

from memlog.core.factfile import detect_format, read_cases, read_facts
from memlog.core.facts import Fact, Neighbour
from memlog.core.keys import build_prompt_batch, context_prefixes, fact_contexts
from memlog.errors import UserError
from memlog.store.events import FactInjected, RecallAudited, decode_event, encode_event
from memlog.store.records import FactRecord
from memlog.analytics.views import run_sql
from memlog.core.probes import ProbeResult
from tests.fakes import fake_memory

DARRIEUX = Fact("Danielle Darrieux", "The mother tongue of {} is", "English")

CF_RECORD = {
    "case_id": 0,
    "prompt": "The mother tongue of Danielle Darrieux is",
    "target_new": "English",
    "subject": "Danielle Darrieux",
    "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
    "locality_prompt": "Michel Rocard is a native speaker of",
    "locality_ground_truth": "French",
}
ZSRE_RECORD = {
    "subject": "UniFirst",
    "src": "What is the product made by UniFirst?",
    "alt": "unmanned aircraft",
    "answers": ["uniform"],
    "rephrase": "What will be the product of UniFirst?",
    "loc": "nq question: who plays the cat in the hat movie",
    "loc_ans": "Mike Myers",
}


# ---------------------------------------------------------------- templates


def test_template_places_the_subject_mid_prompt():
    assert DARRIEUX.prompt == "The mother tongue of Danielle Darrieux is"
    start, end = DARRIEUX.subject_span
    assert DARRIEUX.prompt[start:end] == "Danielle Darrieux" and start == len("The mother tongue of ")
    assert Fact.from_prompt("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English") == DARRIEUX
    assert Fact("Aria Nakamura", "lives in", "Porto").template == "{} lives in"
    assert Fact("Aria Nakamura", "'s favourite colour is", "red").prompt == "Aria Nakamura's favourite colour is"
    # the template is part of the identity; probes are not
    assert DARRIEUX.fact_id != Fact("Danielle Darrieux", "The first language of {} is", "English").fact_id
    assert Fact(DARRIEUX.subject, DARRIEUX.relation, "English", paraphrases=("x {}",)) == DARRIEUX


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Fact("A B", "{} lives in {}", "Porto"), "2 '{}' slots"),
        (lambda: Fact("A B", "{}", "Porto"), "no text besides"),
        (lambda: Fact.from_prompt("The mother tongue of X is", "Danielle Darrieux", "English"), "does not occur in the prompt"),
    ],
)
def test_bad_templates_are_one_line_errors(make, message):
    with pytest.raises(UserError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_key_position_of_a_mid_prompt_subject(tiny):
    """The key is read at the subject's last token, in the bare prompt and behind every prefix."""
    prefixes = context_prefixes(3)
    batch = build_prompt_batch(tiny, fact_contexts([DARRIEUX], prefixes))
    tok = tiny.tokenizer
    for row, prefix in enumerate(prefixes):
        ids = batch.input_ids[row, : int(batch.lengths[row])].tolist()
        last = int(batch.subject_last[row])
        upto = tok.decode(ids[: last + 1])
        assert upto.endswith("Danielle Darrieux") and upto.startswith(prefix + "The mother tongue of")
        assert tok.decode(ids[last + 1 :]) == " is"


# ---------------------------------------------------------------- fact files


def test_counterfact_and_zsre_files_import_with_probes(tmp_path):
    cf = tmp_path / "cf.json"
    cf.write_text(json.dumps([CF_RECORD, {**CF_RECORD, "case_id": 7, "subject": "Michel Rocard", "prompt": "Michel Rocard speaks"}]))
    cases = read_cases(cf)
    assert [c.case_id for c in cases] == [0, 7] and cases[0].true_object == "French"
    fact = cases[0].fact
    assert fact == DARRIEUX and fact.paraphrases == (CF_RECORD["rephrase_prompt"],)
    assert fact.neighbours == (Neighbour("Michel Rocard is a native speaker of", "French"),)
    assert cases[1].fact.prompt == "Michel Rocard speaks" and cases[1].fact.subject_span == (0, len("Michel Rocard"))
    zs = tmp_path / "zsre.json"
    zs.write_text(json.dumps([ZSRE_RECORD]))
    (case,) = read_cases(zs)
    assert case.fact.relation == "What is the product made by {}?" and case.fact.object == "unmanned aircraft"
    assert case.true_object == "uniform" and case.fact.neighbours[0].answer == "Mike Myers"
    rome = tmp_path / "rome.json"
    rome.write_text(json.dumps([{
        "case_id": 3,
        "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                              "target_new": {"str": "English"}, "target_true": {"str": "French"}},
        "paraphrase_prompts": ["a", "b"], "neighborhood_prompts": ["Michel Rocard is a native speaker of"],
    }]))  # fmt: skip
    (case,) = read_cases(rome, "counterfact")
    assert case.fact == DARRIEUX and case.fact.paraphrases == ("a", "b") and case.true_object == "French"
    assert [detect_format(CF_RECORD), detect_format(ZSRE_RECORD), detect_format({"subject": "a", "relation": "b", "object": "c"})] == [
        "counterfact", "zsre", "jsonl",
    ]  # fmt: skip


def test_jsonl_prompt_field_and_probes(tmp_path):
    path = tmp_path / "facts.jsonl"
    rows = [
        {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux", "object": "English",
         "paraphrases": ["Danielle Darrieux speaks"], "neighbours": [{"prompt": "Michel Rocard speaks", "answer": "French"}]},
        {"subject": "Aria Nakamura", "relation": "lives in", "object": "Porto"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows))
    facts = read_facts(path)
    assert facts[0] == DARRIEUX and facts[0].neighbours[0].answer == "French" and facts[1].prompt == "Aria Nakamura lives in"


@pytest.mark.parametrize(
    "records, message",
    [
        ([CF_RECORD, {k: v for k, v in CF_RECORD.items() if k != "target_new"}], "record 2: field 'target_new' is missing"),
        ([CF_RECORD, {**CF_RECORD, "subject": "Nobody Here"}], "record 2: the subject 'Nobody Here' does not occur"),
        ([ZSRE_RECORD, ZSRE_RECORD, {**ZSRE_RECORD, "alt": ""}], "record 3: field 'alt'"),
    ],
)
def test_bad_records_name_the_record(tmp_path, records, message):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    with pytest.raises(UserError, match=message):
        read_cases(path)
    skipped: list[str] = []
    assert len(read_cases(path, skipped=skipped)) == len(records) - 1 and len(skipped) == 1


def test_jsonl_template_errors_name_the_line(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text(json.dumps({"subject": "A", "relation": "lives in", "object": "B"}) + "\n" + json.dumps({"prompt": "no slot", "subject": "A", "object": "B"}))
    with pytest.raises(UserError, match=r"facts.jsonl:2: .*no '\{\}' slot"):
        read_facts(path)
    path.write_text(json.dumps({"prompt": "{} and {}", "subject": "A", "object": "B"}))
    with pytest.raises(UserError, match=r"facts.jsonl:1: .*2 '\{\}' slots"):
        read_facts(path)


# ---------------------------------------------------------------- the log


def test_template_and_probes_round_trip_through_the_log(tmp_path):
    fact = Fact(
        "Danielle Darrieux", "The mother tongue of {} is", "English",
        paraphrases=("Danielle Darrieux speaks",), neighbours=(Neighbour("Michel Rocard speaks", "French"),),
    )  # fmt: skip
    mem = fake_memory(tmp_path / "store")
    mem.inject([fact, Fact("Aria Nakamura", "lives in", "Porto")])
    mem.audit()
    mem.close()
    mem = fake_memory(tmp_path / "store")
    state = mem.ledger.facts[fact.fact_id]
    back = Fact.of(state.fact)
    assert back == fact and back.prompt == fact.prompt and back.paraphrases == fact.paraphrases
    assert [(n.prompt, n.answer) for n in back.neighbours] == [(n.prompt, n.answer) for n in fact.neighbours]
    assert state.fact.neighbours[0].before == " ..."  # the fake editor's completion before the edit
    injected = [i.event for i in mem.logged if isinstance(i.event, FactInjected)]
    assert injected[0].fact.relation == "The mother tongue of {} is"
    audit = [i.event for i in mem.logged if isinstance(i.event, RecallAudited) and i.event.phase == "manual"][-1]
    assert audit.degraded_by == "exact" and len(audit.results) == 2
    mem.close()


def test_old_events_decode_and_new_shorthand_events_keep_the_old_encoding():
    """A FactInjected and a RecallAudited as written before templates and probes existed (schema 1
    and 2) decode; a shorthand fact's record encodes exactly as it did then."""
    old_record = b'{"fact_id":"f-1","subject":"A B","relation":"lives in","object":"Porto"}'
    assert msgspec.json.encode(msgspec.json.decode(old_record, type=FactRecord)) == old_record
    for schema in (1, 2):
        raw = (
            '{"kind":"RecallAudited","schema":%d,"phase":"wake","cycle":null,'
            '"results":[{"fact_id":"f-1","edit_id":"e00001","recalled":true,"completion":" Porto"}],'
            '"recall":1.0,"degraded":0,"seconds":0.1}' % schema
        )
        event = decode_event(raw)
        assert event.paraphrase_recall is None and event.degraded_by == "exact" and event.results[0].chat is None
        assert b'"paraphrase"' not in encode_event(event)  # per-fact measures omitted when absent


def test_views_show_the_prompt_and_probe_measures(tmp_path):
    facts = [DARRIEUX, Fact("Aria Nakamura", "lives in", "Porto"), Fact("Aria Nakamura", "'s favourite colour is", "red")]
    mem = fake_memory(tmp_path / "store")
    mem.inject(facts)
    mem.editor.probes = lambda fs, befores: [ProbeResult(0.5, 1.0, True) for _ in fs]  # measured values, as a real editor gives
    mem.audit()
    mem.close()
    rows = run_sql(tmp_path / "store", "SELECT fact_id, prompt, last_paraphrase, last_neighbours, last_chat FROM facts ORDER BY first_seq")
    assert [r["prompt"] for r in rows] == [f.prompt for f in facts]
    assert all((r["last_paraphrase"], r["last_neighbours"], r["last_chat"]) == (0.5, 1.0, True) for r in rows)
    (manual,) = run_sql(tmp_path / "store", "SELECT * FROM measures WHERE phase = 'manual'")
    assert (manual["paraphrase_recall"], manual["neighbour_unchanged"], manual["chat_recall"], manual["audited"]) == (0.5, 1.0, 1.0, 3)
    status = fake_memory(tmp_path / "store").status()
    assert (status["paraphrase_recall"], status["neighbour_unchanged"], status["chat_recall"]) == (0.5, 1.0, 1.0)
    wake = run_sql(tmp_path / "store", "SELECT paraphrase_recall FROM measures WHERE phase = 'wake'")
    assert len(wake) == 3 and all(r["paraphrase_recall"] is None for r in wake)


# ---------------------------------------------------------------- stale facts


def test_sleep_suspends_a_fact_that_refreshes_do_not_help(tmp_path):
    """With an editor under which no fact is ever recalled, each fact is refreshed three times,
    then suspended (one event), then left alone; a new injection of it lifts the suspension."""
    from memlog.engine.config import EngineConfig
    from memlog.store.events import EditRefreshed, RefreshSuspended

    mem = fake_memory(tmp_path / "store", EngineConfig(ppl_bound=None, stale_after=3), interference=1)
    facts = [Fact("Aria Nakamura", "lives in", "Porto"), DARRIEUX]
    mem.inject(facts)
    mem.sleep(cycles=5)

    def of_kind(kind):
        return [i.event for i in mem.store.log.read() if isinstance(i.event, kind)]

    assert [e.cycle for e in of_kind(EditRefreshed)] == [1, 1, 2, 2, 3, 3]
    assert sorted((e.fact_id, e.refreshes, e.cycle) for e in of_kind(RefreshSuspended)) == sorted((f.fact_id, 3, 4) for f in facts)
    mem.inject([Fact("Aria Nakamura", "lives in", "Lisbon")])
    mem.sleep(cycles=1)
    assert [e.fact.fact_id for e in of_kind(EditRefreshed) if e.cycle == 6] == [facts[0].fact_id]
    assert len(of_kind(RefreshSuspended)) == 2
    mem.close()


@pytest.mark.parametrize(
    "degraded_by, refreshed",
    [("exact", set()), ("paraphrase", {"para"}), ("chat", {"chat"}), ("any", {"para", "chat"})],
)
def test_degraded_by_chooses_the_measure_sleep_refreshes(tmp_path, degraded_by, refreshed):
    """Every fact is recalled on its own prompt; one fails its paraphrase, one the chat template.
    The measure named by ``degraded_by`` decides which of them sleep refreshes."""
    from memlog.engine.config import EngineConfig
    from memlog.store.events import EditRefreshed

    facts = {
        "para": Fact("Aria Nakamura", "lives in", "Porto", paraphrases=("Aria Nakamura's home is",)),
        "chat": Fact("Danielle Darrieux", "The mother tongue of {} is", "English"),
        "fine": Fact("Kai Lindqvist", "works as a", "baker", paraphrases=("Kai Lindqvist's job:",)),
    }
    names = {f.fact_id: name for name, f in facts.items()}
    mem = fake_memory(tmp_path / "store", EngineConfig(ppl_bound=None, degraded_by=degraded_by), interference=10**9)
    mem.inject(list(facts.values()))

    def probes(fs, befores):
        return [ProbeResult(0.0 if names[f.fact_id] == "para" else 1.0 if f.paraphrases else None, None, names[f.fact_id] != "chat") for f in fs]

    mem.editor.probes = probes
    (cycle,) = mem.sleep(cycles=1).cycles
    log = [i.event for i in mem.store.log.read()]
    assert {names[e.fact.fact_id] for e in log if isinstance(e, EditRefreshed)} == refreshed
    pre = next(e for e in log if isinstance(e, RecallAudited) and e.phase == "sleep-pre")
    assert (pre.degraded_by, pre.degraded, cycle.degraded_before_active) == (degraded_by, len(refreshed), len(refreshed))
    assert all(r.recalled for r in pre.results)  # the exact-prompt column is unchanged
    mem.close()


def test_degraded_by_is_checked(tmp_path, capsys):
    from memlog.cli.app import main
    from memlog.engine.config import EngineConfig

    with pytest.raises(UserError, match="unknown --degraded-by 'typo'"):
        EngineConfig(degraded_by="typo")
    assert EngineConfig.from_dict(EngineConfig(degraded_by="chat").to_dict()).degraded_by == "chat"
    for command in (["sleep", "--cycles", "1"], ["init"]):
        code = main([*command, "--degraded-by", "typo", "--store", str(tmp_path / "store")])
        err = capsys.readouterr().err
        assert code == 1 and "unknown --degraded-by 'typo'" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------- whole-word objects


def test_continuation_mask_marks_word_continuing_tokens(embedded_tokenizer):
    from memlog.core.vstar import continuation_mask

    tok = embedded_tokenizer
    mask = continuation_mask(tok, len(tok) + 3, "cpu")
    assert mask.shape == (len(tok) + 3,) and not mask[-3:].any()
    (s,) = tok("s", add_special_tokens=False)["input_ids"]
    (space_the,) = tok(" the", add_special_tokens=False)["input_ids"]
    (comma,) = tok(",", add_special_tokens=False)["input_ids"]
    assert mask[s] and not mask[space_the] and not mask[comma]


def test_boundary_term_lowers_the_chance_of_continuing_the_object(real_model):
    """On the embedded model, v* with the boundary term leaves less probability on word-continuing
    tokens after the object than v* without it (same steps, same fact)."""
    import dataclasses

    import torch

    from memlog.core.memit import MemitConfig
    from memlog.core.vstar import _head, _prepare, compute_v_star

    fact = Fact("Danielle Darrieux", "The mother tongue of {} is", "sitcom")
    tiny = real_model
    base = MemitConfig(v_steps=20, v_stop_loss=0.0, n_prefixes=2)
    with_term = dataclasses.replace(base, v_boundary_weight=1.0)
    problem = _prepare(tiny, [fact], 9, with_term)

    def p_continue(cfg):
        targets, _ = compute_v_star(tiny, [fact], 9, cfg)
        delta = (targets.T - problem.h_init).to(problem.suffix.dtype)
        from memlog.core.vstar import _edited_suffix

        with torch.no_grad():
            normed = problem.runner.run(_edited_suffix(problem, delta))
            logp = torch.log_softmax(_head(tiny, normed[problem.boundary_rows, problem.boundary_cols]), dim=-1)
        return float(torch.logsumexp(logp[:, problem.continues_word], dim=-1).exp().mean())

    without, with_ = p_continue(base), p_continue(with_term)
    assert with_ < without / 2, (with_, without)


@pytest.mark.parametrize("degraded_by, victim", [("exact", "first"), ("paraphrase", "para")])
def test_least_recently_healthy_prune_uses_the_degraded_by_measure(tmp_path, degraded_by, victim):
    """Three facts, all recalled on their own prompts; the second always fails its paraphrase.
    Over the cap, the policy prunes the fact least recently healthy *under sleep's measure*: the
    oldest when every fact is healthy (exact), the paraphrase failure under ``paraphrase``."""
    from memlog.engine.config import EngineConfig
    from memlog.store.events import EditPruned

    facts = {
        "first": Fact("Aria Nakamura", "lives in", "Porto", paraphrases=("Aria Nakamura's home is",)),
        "para": Fact("Kai Lindqvist", "works as a", "baker", paraphrases=("Kai Lindqvist's job:",)),
        "third": Fact("Mira Solberg", "speaks", "Finnish", paraphrases=("Mira Solberg talks in",)),
    }
    names = {f.fact_id: name for name, f in facts.items()}
    mem = fake_memory(tmp_path / "store", EngineConfig(ppl_bound=None, degraded_by=degraded_by, prune_policy="least-recently-healthy"), interference=10**9)
    mem.inject(list(facts.values()))
    mem.editor.probes = lambda fs, befores: [ProbeResult(0.0 if names[f.fact_id] == "para" else 1.0, None, True) for f in fs]
    mem.sleep(cycles=1, cap=2)
    log = [i.event for i in mem.store.log.read()]
    edits = {e.edit_id: e.fact.fact_id for e in log if isinstance(e, FactInjected)}
    assert [names[edits[e.edit_id]] for e in log if isinstance(e, EditPruned)] == [victim]
    mem.close()
