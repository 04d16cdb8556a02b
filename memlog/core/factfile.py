"""Reading files of facts: memlog's JSONL, CounterFact and zsRE.

``read_cases(path, fmt)`` returns one ``EditCase`` per record, everything validated before
anything is written (a file is all or nothing; an error names the record). ``fmt`` is
``jsonl``, ``counterfact``, ``zsre`` or ``auto`` (detected from the first record's fields).

* ``jsonl``: one object per line, ``{"subject", "relation", "object"}`` or
  ``{"prompt", "subject", "object"}`` where ``prompt`` is a template with ``{}`` for the
  subject; optional ``paraphrases`` (list of prompts) and ``neighbours`` (list of
  ``{"prompt", "answer"}``).
* ``counterfact``: a JSON list in the EasyEdit/MEND layout (``prompt``, ``subject``,
  ``target_new``, ``ground_truth``, ``rephrase_prompt``, ``locality_prompt``,
  ``locality_ground_truth``) or in ROME's original layout (``requested_rewrite`` with a
  ``{}`` template, ``paraphrase_prompts``, ``neighborhood_prompts``). The fact's object is the
  new target; the true answer is kept beside it for the efficacy score.
* ``zsre``: a JSON list in the MEND layout (``subject``, ``src`` question, ``alt`` new answer,
  ``answers``, ``rephrase``, ``loc``, ``loc_ans``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from memlog.core.facts import Fact, Neighbour
from memlog.errors import UserError

FORMATS = ("auto", "jsonl", "counterfact", "zsre")


@dataclass(frozen=True)
class EditCase:
    """One record: the fact to write and, when the format has it, the answer it replaces."""

    fact: Fact
    true_object: str | None = None
    case_id: int | str | None = None


def _text(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"field {key!r} is missing or not a non-empty string")
    return value


def _texts(record: dict, key: str) -> list[str]:
    value = record.get(key, [])
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"field {key!r} must be a string or a list of strings")
    return value


def _jsonl_case(record: dict) -> EditCase:
    neighbours = []
    for n in record.get("neighbours", []):
        if not isinstance(n, dict):
            raise UserError("each of 'neighbours' must be an object with prompt and answer")
        neighbours.append(Neighbour(_text(n, "prompt"), _text(n, "answer")))
    probes = {"paraphrases": tuple(_texts(record, "paraphrases")), "neighbours": tuple(neighbours)}
    if "prompt" in record:
        if "relation" in record:
            raise UserError("give either 'prompt' (a template with {}) or 'relation', not both")
        template = _text(record, "prompt")
        if "{}" not in template:
            raise UserError(f"the prompt template {template!r} has no '{{}}' slot for the subject")
        fact = Fact(_text(record, "subject"), template, _text(record, "object"), **probes)
    else:
        if not all(isinstance(record.get(k), str) for k in ("subject", "relation", "object")):
            raise UserError("needs string fields subject, relation and object (or prompt, subject and object)")
        fact = Fact(record["subject"], record["relation"], record["object"], **probes)
    true = record.get("true_object")
    return EditCase(fact, true if isinstance(true, str) else None, record.get("case_id"))


def _counterfact_case(record: dict) -> EditCase:
    if "requested_rewrite" in record:  # ROME's original layout
        rw = record["requested_rewrite"]
        if not isinstance(rw, dict):
            raise UserError("field 'requested_rewrite' must be an object")
        target_new, target_true = rw.get("target_new"), rw.get("target_true")
        if not isinstance(target_new, dict) or not isinstance(target_true, dict):
            raise UserError("requested_rewrite needs objects target_new and target_true with field 'str'")
        subject = _text(rw, "subject")
        fact = Fact.from_prompt(
            _text(rw, "prompt"),
            subject,
            _text(target_new, "str"),
            paraphrases=tuple(_texts(record, "paraphrase_prompts")),
            neighbours=tuple(Neighbour(p, _text(target_true, "str")) for p in _texts(record, "neighborhood_prompts")),
        )
        return EditCase(fact, _text(target_true, "str"), record.get("case_id"))
    truth = _text(record, "ground_truth")
    fact = Fact.from_prompt(
        _text(record, "prompt"),
        _text(record, "subject"),
        _text(record, "target_new"),
        paraphrases=tuple(_texts(record, "rephrase_prompt")),
        neighbours=tuple(Neighbour(p, _text(record, "locality_ground_truth")) for p in _texts(record, "locality_prompt")),
    )
    return EditCase(fact, truth, record.get("case_id"))


def _zsre_case(record: dict) -> EditCase:
    answers = _texts(record, "answers")
    fact = Fact.from_prompt(
        _text(record, "src"),
        _text(record, "subject"),
        _text(record, "alt"),
        paraphrases=tuple(_texts(record, "rephrase")),
        neighbours=tuple(Neighbour(p, _text(record, "loc_ans")) for p in _texts(record, "loc")),
    )
    return EditCase(fact, answers[0] if answers else None, record.get("case_id"))


_READERS = {"jsonl": _jsonl_case, "counterfact": _counterfact_case, "zsre": _zsre_case}


def detect_format(record: object) -> str:
    """The format whose fields ``record`` has; an error when none (or more than one) fits."""
    if not isinstance(record, dict):
        raise UserError("the first record is not a JSON object")
    keys = set(record)
    fits = []
    if "requested_rewrite" in keys or {"target_new", "ground_truth"} <= keys:
        fits.append("counterfact")
    if {"src", "alt"} <= keys:
        fits.append("zsre")
    if "object" in keys:
        fits.append("jsonl")
    if len(fits) != 1:
        raise UserError(f"cannot tell the file's format from fields {sorted(keys)}; pass --file-format counterfact, zsre or jsonl")
    return fits[0]


def _utf8_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are a UserError naming ``file:line``."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None


def _records(path: Path) -> tuple[list[tuple[str, object]], bool]:
    """``(label, record)`` pairs and whether the file is a JSON list (else JSON lines). Lines are
    split at newlines only, as editors number them (not at Unicode line separators)."""
    text = _utf8_text(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the file starts with '[' so it is read as one JSON list") from None
        if not isinstance(data, list):
            raise UserError(f"{path}:1: not a JSON list of records")
        return [(f" record {i}", r) for i, r in enumerate(data, start=1)], True
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            rows.append((f"{lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
    return rows, False


def read_cases(path: Path, fmt: str = "auto", skipped: list[str] | None = None) -> list[EditCase]:
    """Every record of ``path`` as an ``EditCase``; a one-line error naming the first bad record.

    With a ``skipped`` list, bad records are left out instead and their errors appended to it
    (for measuring on a public data set that holds a few broken records)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown fact file format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise UserError(f"no such facts file: {path}")
    records, _ = _records(path)
    if not records:
        raise UserError(f"{path} holds no facts")
    if fmt == "auto":
        try:
            fmt = detect_format(records[0][1])
        except UserError as exc:
            raise UserError(f"{path}:{records[0][0]}: {exc}") from None
    reader = _READERS[fmt]
    cases = []
    for label, record in records:
        try:
            if not isinstance(record, dict):
                raise UserError("not a JSON object")
            cases.append(reader(record))
        except UserError as exc:
            if skipped is None:
                raise UserError(f"{path}:{label}: {exc}") from None
            skipped.append(f"{label.strip()}: {exc}")
    if not cases:
        raise UserError(f"{path} holds no valid facts")
    return cases


def read_facts(path: Path, fmt: str = "auto") -> list[Fact]:
    """The facts of ``path`` (see ``read_cases``)."""
    return [case.fact for case in read_cases(path, fmt)]
