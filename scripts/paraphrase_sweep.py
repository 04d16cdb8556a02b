"""Generalisation in the edit itself: v* over the fact's paraphrases, and v*'s word-boundary term,
each measured on CounterFact records edited alone into the unedited embedded model.

Each record of a seeded random sample is edited alone with every setting (``name=value``
overrides of ``MemitConfig``, ``default`` for none), measured and undone, record by record, so
a run cut short still compares the settings on the same records. v* may train on the record's
paraphrase (``rephrase_prompt``, "train" below); recall on it is then in-sample. A **held-out**
phrasing is never seen by the edit: CounterFact's neighbourhood prompt is the same relation
about another subject, phrased with one of the relation's templates; the template is found by
matching it against the templates of all records' prompts (the longest match), and the record's
subject is put in its slot. Records whose neighbourhood template is their own prompt's, or whose
paraphrase lacks the subject (the option could not use it), are skipped before any edit and
counted.

Measured per record and setting (``memlog.experiments.knowledge_eval.measure``): ES, NS, live
efficacy, live neighbourhood, chat, and PS / live paraphrase on the train paraphrase and on the
held-out phrasing; the edit's PPL change on the reference slice; v* NLL, norm and seconds.

Usage: ``python scripts/paraphrase_sweep.py --file counterfact-edit-10k.json --sample 20 --seed 5
--out docs/runs/paraphrase-sweep-seed5.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from _common import log, setup_threads, write_json
from constants_sweep import config_of

from memlog.core.factfile import EditCase, read_cases
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.keys import subject_in
from memlog.core.memit import applied, prepare_covariances
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.engine.editor import MemitEditor
from memlog.engine.open import _load_or_compute_covariances
from memlog.experiments.knowledge_eval import Baseline, baseline, measure, sample_cases

SETTINGS = "default|v_paraphrases=1|v_boundary_weight=1.0"
COLUMNS = ("ES", "NS", "live_efficacy", "live_neighbour", "chat", "PS_train", "live_para_train", "PS_heldout", "live_para_heldout")


def neighbour_template(prompt: str, templates: list[str]) -> str | None:
    """The longest template that ``prompt`` fills with a non-empty subject, or None."""
    for template in templates:
        head, tail = template.split("{}")
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) > len(head) + len(tail):
            return template
    return None


def eligible(cases: list[EditCase], templates: list[str], limit: int) -> tuple[list[tuple[EditCase, EditCase]], dict]:
    """Up to ``limit`` (train case, held-out case) pairs from ``cases`` in order, and what was
    skipped on the way: the train case keeps the record's paraphrase, the held-out one has the
    neighbourhood template with the record's subject as its only paraphrase."""
    pairs, skipped = [], {"same_template": 0, "no_template": 0, "paraphrase_without_subject": 0}
    for case in cases:
        if len(pairs) == limit:
            break
        fact = case.fact
        found = neighbour_template(fact.neighbours[0].prompt, templates) if fact.neighbours else None
        if found is None:
            skipped["no_template"] += 1
        elif found == fact.template:
            skipped["same_template"] += 1
        elif not fact.paraphrases or subject_in(fact.paraphrases[0], fact.subject) is None:
            skipped["paraphrase_without_subject"] += 1
        else:
            train = dataclasses.replace(case, fact=dataclasses.replace(fact, paraphrases=fact.paraphrases[:1]))
            held = dataclasses.replace(case, fact=dataclasses.replace(fact, paraphrases=(found.replace("{}", fact.subject),)))
            pairs.append((train, held))
    return pairs, skipped


def measure_pair(lm, train: EditCase, held: EditCase, base: Baseline, chat: bool = True) -> dict:
    row = measure(lm, [train], base, chat=chat)[0]
    other = measure(lm, [held], base, chat=False)[0]
    row["PS_train"], row["live_para_train"] = row.pop("PS"), row.pop("live_paraphrase")
    row["PS_heldout"], row["live_para_heldout"] = other["PS"], other["live_paraphrase"]
    row["heldout_prompt"] = held.fact.paraphrases[0]
    row["train_paraphrase"] = train.fact.paraphrases[0]
    return row


def summary(rows: list[dict], base_ppl: float) -> dict:
    mean = lambda key: statistics.mean(r[key] for r in rows if r.get(key) is not None)  # noqa: E731
    out = {"n": len(rows), **{c: mean(c) for c in COLUMNS}}
    if rows and "ppl" in rows[0]:
        changes = [100 * (r["ppl"] / base_ppl - 1) for r in rows]
        out.update(ppl_change_pct_mean=statistics.mean(changes), ppl_change_pct_max=max(changes, key=abs))
        out.update(v_nll_mean=mean("v_nll"), edit_seconds_median=statistics.median(r["edit_seconds"] for r in rows))
    return out


def table(out: dict) -> str:
    lines = ["| setting | n | " + " | ".join(COLUMNS) + " | PPL Δ% mean (max) | edit s (median) |", "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for label, r in [("unedited", out.get("unedited_of_edited", out["unedited"]))] + list(out["summary"].items()):
        ppl = f"{r['ppl_change_pct_mean']:+.3f} ({r['ppl_change_pct_max']:+.3f})" if "ppl_change_pct_mean" in r else "-"
        secs = f"{r['edit_seconds_median']:.1f}" if "edit_seconds_median" in r else "-"
        lines.append(f"| {label} | {r['n']} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS) + f" | {ppl} | {secs} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--sample", type=int, default=20, help="eligible records to edit")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--settings", default=SETTINGS, help="'|'-separated MemitConfig overrides")
    parser.add_argument("--no-ppl", action="store_true", help="skip the perplexity of each edit")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    setup_threads()
    settings = args.settings.split("|")
    all_cases = read_cases(Path(args.file))
    templates = sorted({c.fact.template for c in all_cases}, key=lambda t: (-len(t), t))
    shuffled = sample_cases(all_cases, None, args.seed)
    pairs, skipped = eligible(shuffled, templates, args.sample)
    looked_at = len(pairs) + sum(skipped.values())
    out: dict = {"args": vars(args), "records_looked_at": looked_at, "skipped": skipped, "rows": {s: [] for s in settings}}
    lm = load_model(ModelSpec())
    defaults = MemitConfig()
    covs = prepare_covariances(_load_or_compute_covariances(lm, list(defaults.layers), defaults, cached_model_fingerprint(lm), None, lambda *a: None)[0])
    editors = {s: MemitEditor(lm, config_of(s), covs) for s in settings}
    out["base_ppl"] = base_ppl = editors[settings[0]].perplexity()
    bases = [baseline(lm, [train]) for train, _ in pairs]
    out["unedited_rows"] = [measure_pair(lm, t, h, b) for (t, h), b in zip(pairs, bases)]
    out["unedited"] = summary(out["unedited_rows"], base_ppl)
    log(f"{len(pairs)} records of {looked_at} looked at (seed {args.seed}, skipped {skipped}); base PPL {base_ppl:.4f}; unedited {out['unedited']}")
    for i, ((train, held), base) in enumerate(zip(pairs, bases)):
        for setting in settings:
            started = time.perf_counter()
            result = editors[setting].edit([train.fact])
            with applied(lm, result.deltas):
                row = measure_pair(lm, train, held, base)
                row.update(v_nll=result.v_losses[0], v_norm=result.v_norms[0], edit_seconds=result.seconds)
                if not args.no_ppl:
                    row["ppl"] = editors[setting].perplexity()
            out["rows"][setting].append(row)
            log(f"record {i + 1}/{len(pairs)} {setting}: eff {row['live_efficacy']:.0f} para train {row['live_para_train']:.0f} "
                f"held {row['live_para_heldout']:.0f} ({result.seconds:.0f}s edit, {time.perf_counter() - started:.0f}s total)")  # fmt: skip
        out["summary"] = {s: summary(out["rows"][s], base_ppl) for s in settings}
        out["unedited_of_edited"] = summary(out["unedited_rows"][: i + 1], base_ppl)  # the records edited so far
        write_json(args.out, out)
    print(table(out))


if __name__ == "__main__":
    main()
