"""visionchat.batch over real loopback HTTP (the emulator) and the offline model.

Every assertion about what was sent reads the emulator's request log, so a test
cannot pass on what the client believes it did.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Literal, TypedDict

import pytest
from PIL import Image

import visionchat
from visionchat import BatchError, CostLimitError, batch
from visionchat._batch_cache import CacheError
from visionchat.batch import BatchCacheMismatchWarning
from visionchat.ratelimit import MARGIN
from visionchat.testing import Emulator

KEY = "test-key-for-batches"
COLOURS = [(220, 20, 20), (20, 20, 220), (20, 160, 20), (240, 200, 0), (120, 0, 160)]


def images(n: int) -> list[Image.Image]:
    """``n`` distinct images (distinct sizes too, so each answer names its own image)."""
    return [Image.new("RGB", (60 + i, 40 + i % 7), COLOURS[i % len(COLOURS)]) for i in range(n)]


@pytest.fixture(scope="module")
def server() -> Emulator:
    with Emulator(api_key=KEY) as emu:
        yield emu  # type: ignore[misc]


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    server.rate_limit = None
    server.rate_window = 60.0
    server.rate_limit_retry_after = True
    server.latency = 0.0
    return server


def onemin(emu: Emulator, **kw: object) -> dict[str, object]:
    """Arguments for the 1min.ai backend on the emulator, paced fast (limits tested below)."""
    return {
        "provider": "1min",
        "api_key": KEY,
        "base_url": emu.base_url,
        "progress": False,
        "rate_limit": 3000,
        **kw,
    }


def paths(emu: Emulator) -> Counter[str]:
    return Counter(r.path for r in emu.requests)


def chat_prompts(emu: Emulator) -> list[str]:
    return [r.json["promptObject"]["prompt"] for r in emu.requests if r.path == "/api/chat-with-ai"]


# -- the plain path ---------------------------------------------------------------


def test_each_image_is_one_upload_and_one_chat_with_no_conversation(emu: Emulator) -> None:
    imgs = images(6)
    table = batch(imgs, "What colour is this?", **onemin(emu))
    assert list(table["name"]) == list(range(6))
    assert table["error"].isna().all()
    for i, answer in enumerate(table["answer"]):  # each row answers about its own image
        assert f"{60 + i}×{40 + i % 7}" in answer
    assert paths(emu) == {"/api/assets": 6, "/api/chat-with-ai": 6}
    # one-off turns: no server conversation is created or named
    assert all(
        "conversationId" not in r.json["promptObject"]
        for r in emu.requests
        if r.path == "/api/chat-with-ai"
    )
    assert table["credits"].notna().all() and table.attrs["visionchat"]["answered"] == 6


def test_names_come_from_paths_dicts_and_series(tmp_path: Path, emu: Emulator) -> None:
    import pandas as pd

    for i, img in enumerate(images(3)):
        img.save(tmp_path / f"chart{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    by_folder = batch(tmp_path, "Describe.", **onemin(emu))
    assert list(by_folder["name"]) == [str(tmp_path / f"chart{i}.png") for i in range(3)]
    by_glob = batch(str(tmp_path / "chart[12].png"), "Describe.", **onemin(emu))
    assert list(by_glob["name"]) == [str(tmp_path / f"chart{i}.png") for i in (1, 2)]
    by_dict = batch({"a": images(1)[0]}, "Describe.", **onemin(emu))
    assert list(by_dict["name"]) == ["a"]
    series = pd.Series(images(2), index=["x", "y"])
    by_series = batch(series, "Describe.", **onemin(emu))
    assert list(by_series.index) == ["x", "y"] and list(by_series["name"]) == ["x", "y"]


def test_without_pandas_the_table_is_a_list_of_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    rows = batch(images(2), "What colour?", provider="offline", progress=False)
    assert isinstance(rows, list) and [r["name"] for r in rows] == [0, 1]
    assert set(rows[0]) >= {"name", "answer", "model", "credits", "error", "cached"}
    assert "60×40" in rows[0]["answer"] and "61×41" in rows[1]["answer"]


# -- structured answers -----------------------------------------------------------


@dataclasses.dataclass
class Grade:
    colour: str
    width: int
    is_chart: bool


class GradeDict(TypedDict):
    colour: str
    width: int
    is_chart: bool


@pytest.mark.parametrize(
    "schema",
    [{"colour": str, "width": int, "is_chart": bool}, Grade, GradeDict],
    ids=["dict", "dataclass", "typeddict"],
)
def test_schema_fields_become_columns_over_1min(emu: Emulator, schema: object) -> None:
    table = batch(images(3), "Grade this image.", schema=schema, **onemin(emu))
    assert list(table.columns[:4]) == ["name", "colour", "width", "is_chart"]
    assert list(table["width"]) == [60, 61, 62]
    assert list(table["colour"]) == ["red", "blue", "green"]
    assert not table["is_chart"].any() and table["error"].isna().all()
    # 1min.ai has no structured mode: the prompt carries the JSON Schema
    assert all("JSON Schema" in p and '"width"' in p for p in chat_prompts(emu))


def test_openai_compatible_gets_response_format_and_its_rate_limit_headers(emu: Emulator) -> None:
    emu.rate_limit = 50
    table = batch(
        images(2),
        "Grade.",
        schema={"width": int, "kind": Literal["photograph", "chart"]},
        provider="openai",
        api_key=KEY,
        base_url=emu.base_url + "/v1",
        progress=False,
    )
    assert list(table["width"]) == [60, 61] and table["error"].isna().all()
    chats = [r.json for r in emu.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 2
    fmt = chats[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"width", "kind"}


def test_a_schema_the_model_cannot_satisfy_keeps_the_raw_answer(emu: Emulator) -> None:
    impossible = {
        "type": "object",
        "required": ["score"],
        "properties": {"score": {"type": "integer", "minimum": 10, "maximum": 5}},
    }
    table = batch(images(2), "Score it.", schema=impossible, **onemin(emu))
    assert table["score"].isna().all()
    for answer, error in zip(table["answer"], table["error"], strict=True):
        assert '"score"' in answer  # the model's own text is kept
        assert "does not match the schema" in error and "even after one request" in error
    prompts = chat_prompts(emu)
    assert len(prompts) == 4  # each image: the question, then one repair
    assert sum("Your previous reply was" in p for p in prompts) == 2
    assert paths(emu)["/api/assets"] == 2  # the repair re-uses the uploaded image


def test_a_schema_visionchat_cannot_describe_fails_before_sending(emu: Emulator) -> None:
    with pytest.raises(visionchat.VisionChatError, match="cannot describe to a model"):
        batch(images(2), "Grade.", schema={"when": complex}, **onemin(emu))
    assert not emu.requests


# -- rate limits --------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
def test_throttled_requests_wait_and_are_sent_again(emu: Emulator, retry_after: bool) -> None:
    # The server allows 10 requests in 2 s (300/min); the client is told 900/min.
    emu.rate_limit, emu.rate_window = 10, 2.0
    emu.rate_limit_retry_after = retry_after
    table = batch(images(15), "What colour?", **onemin(emu, rate_limit=900))
    assert table["error"].isna().all() and len(table) == 15
    summary = table.attrs["visionchat"]
    assert summary["throttled"] == emu.throttled > 0
    # Nothing beyond what the answers needed, except the refused requests themselves.
    assert len(emu.requests) == 30 + emu.throttled


def test_openai_headers_set_the_pace(emu: Emulator) -> None:
    from visionchat.providers.openai import OpenAIProvider
    from visionchat.ratelimit import RateLimiter

    emu.rate_limit = 120
    limiter = RateLimiter(500)
    provider = OpenAIProvider(KEY, base_url=emu.base_url + "/v1", rate_limiter=limiter)
    batch(images(2), "Describe.", provider=provider, progress=False)
    assert limiter.stats.ceiling == pytest.approx(120 * MARGIN)


# -- resuming ---------------------------------------------------------------------


def test_a_rerun_sends_only_what_is_missing(tmp_path: Path, emu: Emulator) -> None:
    cache = tmp_path / "answers.sqlite"
    imgs = images(5)
    first = batch(imgs[:3], "What colour?", cache=cache, **onemin(emu))
    assert not first["cached"].any()
    emu.reset()
    second = batch(imgs, "What colour?", cache=cache, **onemin(emu))
    assert list(second["cached"]) == [True, True, True, False, False]
    assert list(second["answer"][:3]) == list(first["answer"])
    assert paths(emu) == {"/api/assets": 2, "/api/chat-with-ai": 2}


def test_failed_images_are_not_cached_and_are_asked_again(tmp_path: Path, emu: Emulator) -> None:
    cache = tmp_path / "answers.sqlite"
    emu.add_fault(
        "status",
        path="/api/chat-with-ai",
        times=4,
        status=400,
        body={"errorCode": "EXTERNAL_API_RESPONSE_WITH_ERROR", "message": "refused"},
    )
    table = batch(images(3), "What colour?", cache=cache, **onemin(emu, concurrency=1))
    assert table["error"].notna().sum() >= 1  # the first request(s) failed, others answered
    failed = int(table["error"].notna().sum())
    emu.reset()
    again = batch(images(3), "What colour?", cache=cache, **onemin(emu))
    assert again["error"].isna().all()
    assert paths(emu)["/api/chat-with-ai"] == failed


def test_a_cache_from_another_prompt_is_said_and_everything_is_sent(
    tmp_path: Path, emu: Emulator
) -> None:
    cache = tmp_path / "answers.sqlite"
    batch(images(2), "What colour?", cache=cache, **onemin(emu))
    emu.reset()
    with pytest.warns(BatchCacheMismatchWarning, match="none to this prompt"):
        table = batch(images(2), "How bright?", cache=cache, **onemin(emu))
    assert not table["cached"].any() and paths(emu)["/api/chat-with-ai"] == 2


def test_a_file_that_is_not_a_cache_is_refused_before_sending(
    tmp_path: Path, emu: Emulator
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(CacheError, match="is not a batch cache"):
        batch(images(2), "What colour?", cache=notes, **onemin(emu))
    assert notes.read_text() == "my notes" and not emu.requests


def _make_read_only(path: Path) -> None:
    import os

    if os.geteuid() == 0:  # root writes through permission bits: make it immutable
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot make a file read-only for root here: {done.stderr!r}")
    else:
        path.chmod(0o444)


def test_a_read_only_cache_is_refused_before_sending(tmp_path: Path, emu: Emulator) -> None:
    cache = tmp_path / "answers.sqlite"
    batch(images(1), "What colour?", cache=cache, **onemin(emu))
    emu.reset()
    _make_read_only(cache)
    try:
        with pytest.raises(CacheError, match=r"read-only\. Pass a writable path, or cache=None"):
            batch(images(2), "What colour?", cache=cache, **onemin(emu))
    finally:
        subprocess.run(["chattr", "-i", str(cache)], capture_output=True, check=False)
    assert not emu.requests


# -- bad input ----------------------------------------------------------------------


def test_an_unreadable_image_is_a_row_with_its_error(tmp_path: Path, emu: Emulator) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    mixed = [images(1)[0], broken, tmp_path / "missing.png", images(2)[1]]
    last: list[visionchat.BatchProgress] = []
    table = batch(mixed, "What colour?", **onemin(emu, progress=last.append))
    assert list(table["error"].isna()) == [True, False, False, True]
    assert table.attrs["visionchat"]["failed"] == 2
    # what was never sent does not count towards the rate and ETA of what is sent
    assert last[-1].unreadable == 2 and last[-1].sent_done == last[-1].to_send == 2
    assert "broken.png" in table["error"][1]
    assert "missing.png" in table["error"][2] and "check the path" in table["error"][2]
    assert paths(emu)["/api/chat-with-ai"] == 2  # nothing sent for the bad ones


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "got no images"),
        (iter(()), "got no images"),
        (Image.new("RGB", (4, 4)), "for one image use visionchat.ask"),
    ],
    ids=["empty-list", "empty-iterator", "one-image"],
)
def test_inputs_that_are_not_a_batch_say_so(emu: Emulator, value: object, message: str) -> None:
    with pytest.raises(BatchError, match=message):
        batch(value, "What colour?", **onemin(emu))
    assert not emu.requests


def test_a_folder_without_images_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(BatchError, match="holds no image files"):
        batch(tmp_path, "What?", provider="offline", progress=False)
    with pytest.raises(BatchError, match="No file matches"):
        batch(str(tmp_path / "*.png"), "What?", provider="offline", progress=False)


# -- cost and fatal errors -------------------------------------------------------


def test_max_cost_refuses_to_start_above_the_estimate(emu: Emulator) -> None:
    with pytest.raises(CostLimitError, match=r"above max_cost=0\.001; nothing was sent"):
        batch(images(4), "What colour?", max_cost=0.001, **onemin(emu))
    assert not emu.requests
    table = batch(images(4), "What colour?", max_cost=100, **onemin(emu))
    assert table.attrs["visionchat"]["estimated_price"] > 0


def test_a_bad_key_stops_the_batch_and_says_why(emu: Emulator) -> None:
    table = batch(images(20), "What colour?", **onemin(emu, api_key="wrong", concurrency=2))
    assert table["error"].notna().all()
    assert all("rejected the API key" in e for e in table["error"])
    assert "wrong" not in " ".join(table["error"])
    assert len(emu.requests) <= 2  # the first refusals stop the rest being sent


def test_progress_callback_sees_the_counts() -> None:
    seen: list[tuple[str, int]] = []
    batch(
        images(3),
        "What?",
        provider="offline",
        progress=lambda p: seen.append((p.phase, p.answered)),
    )
    assert seen[-1] == ("done", 3)


def test_progress_line_in_a_script(capsys: pytest.CaptureFixture[str]) -> None:
    batch(images(2), "What?", provider="offline")
    err = capsys.readouterr().err
    assert "visionchat batch: 2/2 answered · 0 failed · 0 throttled" in err


def test_warnings_are_not_raised_for_a_clean_run(emu: Emulator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch(images(2), "What colour?", **onemin(emu))


def test_ctrl_c_keeps_every_finished_row_and_a_rerun_sends_the_rest(
    tmp_path: Path, emu: Emulator
) -> None:
    emu.latency = 0.2
    cache = tmp_path / "answers.sqlite"

    def press_ctrl_c(p: visionchat.BatchProgress) -> None:
        if p.answered >= 3:  # as if Ctrl-C landed while the caller waits
            raise KeyboardInterrupt

    with pytest.raises(visionchat.BatchInterrupted, match="running the same call again") as info:
        batch(
            images(12),
            "What colour?",
            cache=cache,
            **onemin(emu, progress=press_ctrl_c, concurrency=2),
        )
    partial = info.value.result
    answered = partial["error"].isna()
    assert 3 <= answered.sum() < 12 and len(partial) == 12
    assert all("interrupted" in e for e in partial["error"][~answered])
    for i in partial.index[answered]:
        assert f"{60 + i}×" in partial["answer"][i]
    emu.reset()
    again = batch(images(12), "What colour?", cache=cache, **onemin(emu))
    assert again["error"].isna().all()
    assert int(again["cached"].sum()) == int(answered.sum())
    assert paths(emu)["/api/chat-with-ai"] == 12 - int(answered.sum())


def test_progress_views_update_a_few_times_a_second_however_fast_answers_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from visionchat import _batch_progress

    now = [100.0]
    monkeypatch.setattr(_batch_progress.time, "monotonic", lambda: now[0])

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    view = _batch_progress.TextProgress(out)
    p = visionchat.BatchProgress(total=1000, phase="sending", to_send=1000, sending_since=100.0)
    for _ in range(1000):  # 1000 answers in one second of (fake) time
        p.answered += 1
        now[0] += 0.001
        view(p)
    p.phase = "done"
    view(p)
    lines = out.getvalue().split("\r")
    assert 2 <= len(lines) - 1 <= 4  # the first update, one every 0.5 s, and the final one
    assert "1000/1000 answered" in lines[-1] and lines[-1].endswith("\n")
