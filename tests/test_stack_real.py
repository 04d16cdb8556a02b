"""The memory in the user's stack, on the embedded model (SmolLM2-135M).

One store per module with 4 injected facts (kept small for CI; a 30-fact run measured with
scripts/adapter_check.py is in docs/RESULTS.md): the PEFT adapter loaded with
``PeftModel.from_pretrained`` onto the plain base completes every fact as memlog's audit does
and its weights match the projection to 1e-6 relative; attach/detach on the loaded model is
bit-exact; ``memlog serve`` recalls a fact injected by POST in a chat completion.
"""

from __future__ import annotations

import shutil

import openai
import pytest
import torch

import memlog
from memlog.core.facts import Fact
from memlog.core.model import ModelSpec, ensure_embedded_cache
from memlog.core.pool import fact_pool
from memlog.core.recall import audit, is_recalled, object_tokens
from memlog.engine.open import init_memory, open_memory
from tests.serve_helpers import running_server

pytestmark = pytest.mark.real_model

FACTS = fact_pool(4, seed=0)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, real_model):
    path = tmp_path_factory.mktemp("stack") / "store"
    mem = init_memory(path, ModelSpec(), lm=real_model)
    try:
        report = mem.inject(FACTS)
    finally:
        mem.close()  # puts the base weights back into the shared model
    assert report.recall is not None
    return path


def test_peft_adapter_on_the_embedded_model(real_store, real_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from memlog.adapters.peft_export import export_peft

    mem = open_memory(real_store, lm=real_model, writable=False)
    try:
        doc = export_peft(mem, tmp_path / "adapter")
        entries = mem.ledger.applied_entries()
        projected = {layer: mem.projector.layer_sum(layer, entries) for layer in mem.header.layers}
        results = mem.editor.audit(FACTS)
    finally:
        mem.close()
    assert doc["weights_match_log"] is True and sorted(map(int, doc["adapter"]["ranks"])) == [2, 3, 4, 5, 6, 7, 8, 9]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ensure_embedded_cache()), tmp_path / "adapter").eval()
    for layer, weight in projected.items():
        lora = model.base_model.model.model.layers[layer].mlp.down_proj
        merged = lora.base_layer.weight + lora.get_delta_weight("default")
        assert float(torch.linalg.norm(merged - weight) / torch.linalg.norm(weight)) < 1e-6
    tok = real_model.tokenizer
    new_tokens = max(object_tokens(real_model, f.object) for f in FACTS) + 2
    recalled = 0
    for fact, result in zip(FACTS, results):
        ids = tok(fact.prompt, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert text == result.completion and is_recalled(text, fact.object) == result.recalled
        recalled += result.recalled
    assert recalled >= 3  # the comparison is about recalled facts, not empty ones


def test_attach_detach_on_the_embedded_model(real_store, real_model):
    before = {k: v.clone() for k, v in real_model.model.state_dict().items()}
    assert not any(r.recalled for r in audit(real_model, FACTS))  # the plain base knows none of them
    handle = memlog.attach(real_model.model, real_store)
    try:
        assert handle.weights_match_log is True and handle.active_facts == len(FACTS)
        assert sum(r.recalled for r in audit(real_model, FACTS)) >= 3
    finally:
        memlog.detach(real_model.model)
    assert all(torch.equal(v, before[k]) for k, v in real_model.model.state_dict().items())


def test_serve_recalls_a_fact_posted_to_it_in_a_chat_completion(real_store, tmp_path):
    import httpx

    store = tmp_path / "served"
    shutil.copytree(real_store, store)
    fact = Fact("Tomasz Okafor", "lives in", "Helsinki")
    ask = [{"role": "user", "content": f"Where does {fact.subject} live?"}, {"role": "assistant", "content": fact.prompt}]
    with running_server(store, "--api-key", "k", ready_s=600) as (base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", timeout=300, max_retries=0)
        model = client.models.list().data[0].id

        def chat() -> str:
            reply = client.chat.completions.create(model=model, messages=ask, max_tokens=8, extra_body={"continue_final_message": True})
            return reply.choices[0].message.content

        assert not is_recalled(chat(), fact.object)
        with httpx.Client(base_url=base, timeout=300, headers={"Authorization": "Bearer k"}) as http:
            before = http.get("/v1/memory/status").json()["seq"]
            posted = http.post("/v1/memory/facts", json={"facts": [{"subject": fact.subject, "relation": fact.relation, "object": fact.object}]}).json()
            assert posted["facts"][0]["recalled"] is True
            assert is_recalled(chat(), fact.object)
            then = http.get("/v1/memory/replay", params={"until": f"seq={before}"}).json()
        assert then["weights_match"] is True and fact.subject not in {f["subject"] for f in then["facts"]}
