"""The reference text used for the key covariance and for perplexity.

By default it is ``pydoc_data.topics``, the English reference text that ships with every
CPython: its topics are joined in sorted-key order, so the corpus is a pure function of
the Python version (its sha256 is recorded with every covariance). A user corpus is any
UTF-8 text file.

The corpus is split once, deterministically, into two disjoint parts:

* the *perplexity slice*: for the default corpus, the prose topics ``PPL_TOPICS``
  ("naming", "objects": ~11k characters, ~2.4k tokens with the embedded tokenizer, no
  ASCII tables or grammar listings); for a user file, its tail from a paragraph break,
  at least ``PPL_CHARS`` characters long;
* the *covariance part*: everything else, cut into ``n_samples`` evenly spaced windows
  of ``seq_len`` tokens.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from memlog.errors import UserError

PPL_CHARS = 10_000
PPL_TOPICS = ("naming", "objects")
DEFAULT_SEQ_LEN = 64
_PARAGRAPH = "\n\n"


def _pydoc_topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return topics


def reference_texts(path: str | Path | None = None) -> list[str]:
    """The corpus as a list of documents: pydoc topics in sorted order, or one user file."""
    if path is not None:
        return [_read_user_corpus(path)]
    topics = _pydoc_topics()
    return [topics[name] for name in sorted(topics)]


def _read_user_corpus(path: str | Path) -> str:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"corpus file {p} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"corpus file {p} is not UTF-8 text") from None
    if not text.strip():
        raise UserError(f"corpus file {p} is empty")
    return text


def corpus_text(path: str | Path | None = None) -> str:
    """The whole corpus as one string (documents joined by blank lines)."""
    return _PARAGRAPH.join(reference_texts(path))


def corpus_sha256(path: str | Path | None = None) -> str:
    """``sha256:<hex>`` of the corpus text, to key caches and to record with results."""
    return "sha256:" + hashlib.sha256(corpus_text(path).encode("utf-8")).hexdigest()


def split_corpus(text: str, ppl_chars: int = PPL_CHARS) -> tuple[str, str]:
    """Split ``text`` at its tail into (covariance part, perplexity slice); they do not overlap."""
    if len(text) < 2 * ppl_chars:
        raise UserError(
            f"the corpus has {len(text)} characters; it needs at least {2 * ppl_chars} "
            "(a perplexity slice plus text for the covariance)"
        )
    cut = text.rfind(_PARAGRAPH, 0, len(text) - ppl_chars)
    if cut <= 0:
        cut = len(text) - ppl_chars
    return text[:cut], text[cut:].lstrip("\n")


def corpus_parts(path: str | Path | None = None) -> tuple[str, str]:
    """(covariance part, perplexity slice) of the default corpus or of the file at ``path``."""
    if path is not None:
        return split_corpus(_read_user_corpus(path))
    topics = _pydoc_topics()
    if not all(name in topics for name in PPL_TOPICS):
        return split_corpus(corpus_text())
    cov = _PARAGRAPH.join(topics[name] for name in sorted(topics) if name not in PPL_TOPICS)
    ppl = _PARAGRAPH.join(topics[name] for name in PPL_TOPICS)
    return cov, ppl


def perplexity_text(path: str | Path | None = None) -> str:
    """The fixed perplexity slice of the corpus (disjoint from the covariance chunks)."""
    return corpus_parts(path)[1]


def covariance_chunks(
    tokenizer,
    n_samples: int = 200,
    seq_len: int = DEFAULT_SEQ_LEN,
    path: str | Path | None = None,
    text: str | None = None,
) -> list[list[int]]:
    """``n_samples`` token windows of ``seq_len`` ids, evenly spaced over the covariance part.

    The covariance part is that of the default corpus, of the file at ``path``, or ``text``
    itself (used whole) when given. Deterministic for a given corpus and tokenizer. No special
    tokens are added; the first position of each window is an attention sink and is masked by
    the covariance pass.
    """
    if n_samples < 1 or seq_len < 2:
        raise UserError(f"need n_samples >= 1 and seq_len >= 2 (got {n_samples}, {seq_len})")
    cov_text = text if text is not None else corpus_parts(path)[0]
    ids = tokenizer(cov_text, add_special_tokens=False)["input_ids"]
    if len(ids) < n_samples * seq_len:
        raise UserError(
            f"the corpus gives {len(ids)} tokens for the covariance; {n_samples} samples of {seq_len} "
            f"tokens need {n_samples * seq_len}. Use a larger corpus or fewer samples."
        )
    stride = len(ids) // n_samples
    return [list(ids[i * stride : i * stride + seq_len]) for i in range(n_samples)]
