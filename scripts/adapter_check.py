"""The memory as a PEFT adapter on the embedded model, measured on a run with many facts.

Creates a store on the embedded model, injects ``--facts`` pool facts, sleeps ``--cycles``
cycles, then: exports the memory as a PEFT LoRA adapter, loads it with
``PeftModel.from_pretrained`` onto the plain base model, and compares (1) each edit layer's
base + adapter weight with memlog's projection (relative Frobenius error) and (2) each active
fact's greedy completion and recall with memlog's own audit. Repeats the export with
``--max-rank`` truncations and reports the error and the facts each costs. Also measures
recall through the chat template (what ``memlog serve``'s chat route answers from) and the
attach/detach round trip. Prints one JSON document.

    .venv/bin/python scripts/adapter_check.py --store runs/adapter-30 --facts 30 --cycles 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import memlog  # noqa: E402
from memlog.adapters.peft_export import export_peft  # noqa: E402
from memlog.core.model import ModelSpec  # noqa: E402
from memlog.core.pool import fact_pool  # noqa: E402
from memlog.core.recall import chat_audit, is_recalled, object_tokens  # noqa: E402
from memlog.engine.memory import fact_of  # noqa: E402
from memlog.engine.open import init_memory, open_memory  # noqa: E402


def adapter_agreement(mem, adapter_dir: Path) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lm = mem.editor.lm
    base = AutoModelForCausalLM.from_pretrained(mem.header.model_source, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    entries = mem.ledger.applied_entries()
    errors = {}
    for layer in mem.header.layers:
        module = lm.adapter.mlp_out(model.base_model.model, layer)
        weight = module.base_layer.weight + module.get_delta_weight("default") if hasattr(module, "base_layer") else module.weight
        projected = mem.projector.layer_sum(layer, entries)
        errors[layer] = float(torch.linalg.norm(weight - projected) / torch.linalg.norm(projected))
    states = mem.ledger.active_facts()
    facts = [fact_of(s.fact) for s in states]
    audit = mem.editor.audit(facts)
    new_tokens = max(object_tokens(lm, f.object) for f in facts) + 2
    same_completion = same_recall = adapter_recalled = 0
    for fact, result in zip(facts, audit):
        ids = lm.tokenizer(fact.prompt, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
        text = lm.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        recalled = is_recalled(text, fact.object)
        adapter_recalled += recalled
        same_recall += recalled == result.recalled
        same_completion += text == result.completion
    return {
        "max_weight_relative_error": max(errors.values()),
        "facts": len(facts),
        "memlog_recalled": sum(r.recalled for r in audit),
        "adapter_recalled": adapter_recalled,
        "same_recall": same_recall,
        "same_completion": same_completion,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--facts", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ranks", default="4,8,16,32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict = {"facts": args.facts, "cycles": args.cycles, "seed": args.seed}
    if not args.store.exists():
        t = time.perf_counter()
        mem = init_memory(args.store, ModelSpec())
        mem.inject(fact_pool(args.facts, seed=args.seed))
        result["inject_s"] = time.perf_counter() - t
        if args.cycles:
            t = time.perf_counter()
            mem.sleep(cycles=args.cycles)
            result["sleep_s"] = time.perf_counter() - t
        mem.close()
    mem = open_memory(args.store, writable=False)
    out = Path(tempfile.mkdtemp(prefix="adapter-check-"))
    try:
        status = mem.status()
        result.update({k: status[k] for k in ("active_facts", "recall", "degraded", "cycle", "seq")})
        doc = export_peft(mem, out / "full")
        result["ranks"] = doc["adapter"]["ranks"]
        result["full"] = adapter_agreement(mem, out / "full")
        result["truncated"] = []
        for rank in (int(r) for r in args.ranks.split(",")):
            a = export_peft(mem, out / f"r{rank}", max_rank=rank)["adapter"]
            result["truncated"].append(
                {"max_rank": rank, "max_relative_error": a["max_relative_error"], "recall_full": a["recall_full"], "recall_truncated": a["recall_truncated"], "facts_lost": len(a["facts_lost"]), "facts_gained": len(a["facts_gained"])}
            )
        chat = chat_audit(mem.editor.lm, [fact_of(s.fact) for s in mem.ledger.active_facts()])
        result["chat_recall"] = sum(r.recalled for r in chat) / len(chat)
        lm = mem.editor.lm
        mem.projector.project([])  # the plain base, as a user would hold it
        before = {k: v.clone() for k, v in lm.model.state_dict().items()}
        handle = memlog.attach(lm.model, args.store)
        result["attach_weights_match_log"] = handle.weights_match_log
        handle.detach()
        result["detach_bit_exact"] = all(torch.equal(v, before[k]) for k, v in lm.model.state_dict().items())
    finally:
        mem.close()
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
