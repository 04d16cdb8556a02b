"""``memlog serve`` on a tiny random Llama, driven by the real ``openai`` client and httpx.

One server per module on a free port of 127.0.0.1 with an API key; each request is bounded
by a timeout and the server process is stopped when the module ends. The tiny model recalls
nothing, so recall through chat is shown on the embedded model (tests/test_stack_real.py);
here: the OpenAI wire format (plain and streamed), writes (inject, revert, release) and their
refusals, the store lock, replay and a sleep that does not block reads.
"""

from __future__ import annotations

import shutil
import threading

import httpx
import openai
import pytest

from memlog.cli.app import main
from memlog.serve.writer import parse_duration, parse_sleep_when
from memlog.errors import UserError
from tests.conftest import save_tiny_model_dir
from tests.serve_helpers import running_server

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, embedded_tokenizer):
    """A tiny-model store with one fact injected; tests serve copies of it. Returns (store, MEMLOG_CACHE)."""
    from memlog.core.facts import Fact
    from memlog.core.model import ModelSpec
    from memlog.engine.open import init_memory

    root = tmp_path_factory.mktemp("serve")
    model_dir = save_tiny_model_dir(root, embedded_tokenizer)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMLOG_CACHE", str(root / "cache"))
    try:
        mem = init_memory(root / "store", ModelSpec(model=str(model_dir)), layers=[1, 2])
        mem.inject([Fact("Aria Nakamura", "lives in", "Porto")])
        mem.close()
    finally:
        mp.undo()
    return root / "store", root / "cache"


@pytest.fixture(scope="module")
def server(base_store, tmp_path_factory):
    store = tmp_path_factory.mktemp("served") / "store"
    shutil.copytree(base_store[0], store)
    with running_server(store, "--api-key", KEY, env={"MEMLOG_CACHE": str(base_store[1])}) as (base, proc):
        with httpx.Client(base_url=base, timeout=120) as http:
            yield base, proc, http, store


def client(base: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, timeout=120, max_retries=0)


def seq(http) -> int:
    return http.get("/v1/memory/status").json()["seq"]


def test_models_completions_and_chat_plain_and_streamed(server):
    base, _, http, _ = server
    c = client(base)
    model = c.models.list().data[0].id
    assert model == "memlog:store"
    plain = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Where does Aria Nakamura live?"}], max_tokens=6)
    assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
    assert plain.usage.completion_tokens == 6 and plain.choices[0].finish_reason == "length"
    assert plain.system_fingerprint == f"memlog-seq-{seq(http)}"
    chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Where does Aria Nakamura live?"}], max_tokens=6, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "length"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == plain.choices[0].message.content  # greedy: the same text
    text = c.completions.create(model=model, prompt="Aria Nakamura lives in", max_tokens=5)
    streamed = list(c.completions.create(model=model, prompt="Aria Nakamura lives in", max_tokens=5, stream=True))
    assert "".join(ch.choices[0].text for ch in streamed) == text.choices[0].text and text.object == "text_completion"


def test_inject_by_post_then_listed_and_replayed(server):
    base, _, http, _ = server
    before = seq(http)
    r = http.post("/v1/memory/facts", json={"facts": [{"subject": "Bo Lindqvist", "relation": "lives in", "object": "Lyon"}]}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["facts"][0]["status"] == "injected" and body["seq"] > before
    facts = http.get("/v1/memory/facts").json()
    assert facts["seq"] == body["seq"] and [f["object"] for f in facts["data"]] == ["Porto", "Lyon"]
    # replay to the point before the injection: one fact, and the rebuilt weights hash to what the log recorded
    then = http.get("/v1/memory/replay", params={"until": f"seq={before}"}).json()
    assert then["seq"] == before and then["weights_match"] is True and [f["object"] for f in then["facts"]] == ["Porto"]
    verified = http.get("/v1/memory/replay", params={"until": "head", "verify": "true"}).json()
    assert verified["verified"] is True and verified["seq"] == body["seq"]


@pytest.mark.parametrize(
    "path, payload, status, message",
    [
        ("/v1/memory/facts", {"facts": [{"subject": "Cem Aydin", "relation": "works as"}]}, 400, "object"),
        ("/v1/memory/facts", {"facts": [{"subject": "Cem Aydin", "relation": "works as", "object": "  "}]}, 400, "object is empty"),
        ("/v1/memory/facts", {"facts": []}, 400, "facts"),
        ("/v1/memory/facts", {"subject": "Cem Aydin", "relation": "works as", "object": "pilot"}, 400, "facts"),
        ("/v1/memory/sleep", {"cycles": 0}, 400, "cycles"),
        ("/v1/chat/completions", {"model": "memlog:store", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "unknown model"),
        ("/v1/completions", {"model": "memlog:store", "prompt": "hi", "n": 2}, 400, "n"),
        ("/v1/chat/completions", {"model": "memlog:store", "messages": [{"role": "user", "content": "hi"}], "continue_final_message": True}, 400, "continue_final_message"),
    ],
)
def test_bad_requests_get_4xx_json_and_write_nothing(server, path, payload, status, message):
    _, _, http, _ = server
    before = seq(http)
    r = http.post(path, json=payload, headers=AUTH)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["type"]
    assert seq(http) == before
    assert http.get("/v1/memory/replay", params={"until": "banana"}).status_code == 400


def test_missing_or_wrong_api_key_is_refused(server):
    base, _, http, _ = server
    before = seq(http)
    fact = {"facts": [{"subject": "Dana Kim", "relation": "lives in", "object": "Oslo"}]}
    assert http.post("/v1/memory/facts", json=fact).status_code == 401
    r = http.post("/v1/memory/facts", json=fact, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert http.post("/v1/memory/sleep", json={"cycles": 1}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert seq(http) == before
    # reads need no key
    wrong = client(base, key="wrong")
    assert wrong.models.list().data[0].id == "memlog:store"


def test_a_second_writer_gets_the_lock_error(server, capsys):
    _, proc, http, store = server
    before = seq(http)
    code = main(["inject", "Eli Ward", "lives in", "Quito", "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and f"PID {proc.pid}" in err
    assert seq(http) == before
    assert main(["status", "--store", str(store), "--format", "json"]) == 0  # readers are not locked out
    capsys.readouterr()


def test_reads_are_answered_while_a_sleep_runs(server):
    base, _, http, _ = server
    result = {}
    sleeper = threading.Thread(target=lambda: result.update(http.post("/v1/memory/sleep", json={"cycles": 1}, headers=AUTH, timeout=600).json()))
    sleeper.start()
    try:
        with httpx.Client(base_url=base, timeout=60) as reader:
            for _ in range(200):
                if reader.get("/v1/memory/status").json()["sleeping"]:
                    break
                threading.Event().wait(0.05)
            status = reader.get("/v1/memory/status").json()
            assert status["sleeping"] is True
            answer = client(base).completions.create(model="memlog:store", prompt="Aria Nakamura lives in", max_tokens=4)
            assert answer.usage.completion_tokens == 4
            assert reader.get("/v1/memory/status").json()["sleeping"] is True  # answered during the sleep
    finally:
        sleeper.join(timeout=600)
    assert result["cycles"][0]["cycle"] == 1
    status = http.get("/v1/memory/status").json()
    assert status["cycle"] == 1 and status["serving_seq"] == status["seq"] == result["seq"]


def test_serve_refuses_beyond_localhost_without_a_key_and_bad_auto_sleep(server, capsys, monkeypatch):
    _, _, _, store = server
    monkeypatch.delenv("MEMLOG_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--store", str(store)]) == 1
    assert "--api-key" in capsys.readouterr().err
    assert main(["serve", "--sleep-when", "ppl>3", "--store", str(store)]) == 1
    assert "pressure>X" in capsys.readouterr().err
    assert parse_sleep_when("pressure>0.2") == 0.2 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    with pytest.raises(UserError):
        parse_duration("soon")


def test_revert_and_release_by_post(server):
    _, _, http, _ = server
    r = http.post("/v1/memory/facts", json={"facts": [{"subject": "Cem Arslan", "relation": "lives in", "object": "Tromso"}]}, headers=AUTH)
    assert r.status_code == 200, r.text
    rows = {f["subject"]: f for f in http.get("/v1/memory/facts").json()["data"]}
    cem, aria = rows["Cem Arslan"]["edit_id"], rows["Aria Nakamura"]["edit_id"]
    before = seq(http)
    assert http.post(f"/v1/memory/edits/{cem}/release").status_code == 401 and seq(http) == before  # writes need the key
    r = http.post(f"/v1/memory/edits/{cem}/release", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"edit_id": cem, "action": "released", "seq": before + 1} and seq(http) == before + 1
    assert "Cem Arslan" not in [f["subject"] for f in http.get("/v1/memory/facts").json()["data"]]
    kept = [f for f in http.get("/v1/memory/facts", params={"include_pruned": "true"}).json()["data"] if f["subject"] == "Cem Arslan"]
    assert kept and kept[0]["released"] is True and kept[0]["applied"] is True  # released: its edit stays in the weights
    r = http.post(f"/v1/memory/edits/{cem}/release", headers=AUTH)
    assert r.status_code == 400 and "does not hold an active fact" in r.json()["error"]["message"] and seq(http) == before + 1
    r = http.post(f"/v1/memory/edits/{aria}/revert", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"edit_id": aria, "action": "reverted", "seq": before + 2}, r.text
    aria_row = next(f for f in http.get("/v1/memory/facts").json()["data"] if f["subject"] == "Aria Nakamura")
    assert aria_row["applied"] is False
    r = http.post(f"/v1/memory/edits/{aria}/revert", headers=AUTH)
    assert r.status_code == 400 and "already reverted" in r.json()["error"]["message"]
    r = http.post("/v1/memory/edits/e-nope/revert", headers=AUTH)
    assert r.status_code == 400 and "no edit 'e-nope'" in r.json()["error"]["message"] and seq(http) == before + 2


def test_automatic_sleep_on_pressure(base_store, tmp_path):
    """--sleep-when: the tiny model recalls nothing, so pressure is 1.0 after an injection and a sleep starts
    by itself, logged as SleepTriggered then the cycle's events."""
    import time

    from memlog.engine.open import open_memory

    shutil.copytree(base_store[0], tmp_path / "store")
    with running_server(tmp_path / "store", "--sleep-when", "pressure>0.5", "--max-cycles", "1", env={"MEMLOG_CACHE": str(base_store[1])}) as (base, _):
        with httpx.Client(base_url=base, timeout=60) as http:
            deadline = time.monotonic() + 600
            while http.get("/v1/memory/status").json()["auto_sleep"]["sleeps"] < 1:
                assert time.monotonic() < deadline, "no automatic sleep within 600 s"
                time.sleep(0.5)
            status = http.get("/v1/memory/status").json()
            assert status["cycle"] == 1 and status["auto_sleep"]["pressure_above"] == 0.5
            time.sleep(2)  # nothing was injected since: no second sleep
            assert http.get("/v1/memory/status").json()["auto_sleep"]["sleeps"] == 1
    mem = open_memory(tmp_path / "store", writable=False)  # the model path is the module's tiny model
    try:
        kinds = [type(item.event).__name__ for item in mem.logged]
        trigger = next(item.event for item in mem.logged if type(item.event).__name__ == "SleepTriggered")
    finally:
        mem.close()
    assert kinds.index("SleepTriggered") + 1 == kinds.index("SleepStarted") and kinds.count("SleepStarted") == 1
    assert trigger.pressure == 1.0 and trigger.threshold == 0.5
