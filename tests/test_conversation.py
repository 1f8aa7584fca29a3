"""The Conversation against a scriptable provider: every public call, every path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from test_conversation_fakes import FakeProvider, make_image
from visionchat import conversation as conversation_module
from visionchat.conversation import Conversation, ConversationEvent, Reply
from visionchat.errors import (
    NotVisionCapableError,
    ServerError,
    TurnCancelledError,
    VisionChatError,
)
from visionchat.providers.base import StreamEvent, TextDelta, TurnRequest, TurnResult

RED = make_image((220, 20, 20))
BLUE = make_image((20, 20, 220), (80, 60))


def conv_with(**kw: Any) -> tuple[Conversation, FakeProvider]:
    fake = FakeProvider(**kw)
    return Conversation(model="gpt-4o", provider=fake), fake


class Recorder:
    """Collects events and remembers on which thread listeners ran."""

    def __init__(self, conv: Conversation | None = None) -> None:
        self.conv = conv
        self.busy_at_end: list[bool] = []
        self.events: list[ConversationEvent] = []
        self.threads: set[str] = set()
        self.first_delta = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, ev: ConversationEvent) -> None:
        with self.lock:
            self.events.append(ev)
            self.threads.add(threading.current_thread().name)
        if ev.kind == "delta":
            self.first_delta.set()
        if ev.kind in ("turn-end", "turn-error") and self.conv is not None:
            self.busy_at_end.append(self.conv.busy)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


# -- asking ------------------------------------------------------------------


def test_ask_returns_the_whole_answer_and_records_both_messages() -> None:
    conv, fake = conv_with()
    reply = conv.ask("what is this?", RED, BLUE)
    assert isinstance(reply, Reply)
    assert reply.text.startswith("echo what is this? | images=2 |")
    assert reply.text.endswith(" w8")
    assert str(reply) == reply.text
    assert reply.model == "gpt-4o"
    assert reply.credits == 12.5
    assert reply.usage is not None and reply.usage.output_tokens == len(reply.text)
    assert not reply.interrupted
    assert reply.images == (RED, BLUE)
    user, answer = conv.messages
    assert (user.role, user.text, user.images) == ("user", "what is this?", [RED, BLUE])
    assert (answer.role, answer.text, answer.id) == ("assistant", reply.text, reply.message_id)
    assert answer.duration is not None and answer.duration >= 0
    assert not answer.streaming
    assert fake.uploaded == [RED.sha256, BLUE.sha256]
    assert fake.stream_threads == {"visionchat-engine"}
    assert reply._repr_markdown_() == reply.text
    assert "gpt-4o" in repr(reply)


class LockstepProvider(FakeProvider):
    """Sends its next chunk only once the caller has received the last one."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.received = 0

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        for i, chunk in enumerate(self.answer_for(request)):
            yield TextDelta(chunk)
            for _ in range(2000):  # a held-back delta fails the test instead of hanging it
                if self.received > i:
                    break
                await asyncio.sleep(0.005)
            else:
                raise AssertionError(f"delta {i} never reached the caller")
        yield TurnResult(model=request.model)


def test_stream_yields_deltas_that_make_the_reply() -> None:
    fake = LockstepProvider(words=30)
    conv = Conversation(model="gpt-4o", provider=fake)
    deltas = []
    for delta in conv.stream("count", RED):
        deltas.append(delta)
        fake.received += 1
    # a delta is never held back until a later one arrives: each of the 31 went
    # on by itself, though the next was only sent after it was received
    assert len(deltas) == 31
    assert all(isinstance(d, str) and d for d in deltas)
    last = conv.last_reply
    assert last is not None and "".join(deltas) == last.text
    # what arrives in one go (here: an instant provider) comes out together,
    # after the first piece, which is handed over at once
    plain = FakeProvider()
    burst = list(Conversation(model="gpt-4o", provider=plain).stream("all at once"))
    assert burst[0] == "echo all at once | images=0 |"
    assert len(burst) == 2 and burst[1] == " " + " ".join(f"w{i}" for i in range(1, 9))


def test_a_fast_stream_wakes_the_caller_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deltas within DELIVERY_INTERVAL of the last hand-off go on together.

    A stream whose chunks each take a pass of the engine's loop (as reading a
    socket does) used to wake the caller once per chunk.  With the interval
    made longer than the whole turn, everything after the first piece arrives
    in one hand-off, at the end of the turn, so nothing is lost either.
    """
    monkeypatch.setattr(conversation_module, "DELIVERY_INTERVAL", 3600.0)

    class LoopPassPerChunk(FakeProvider):
        async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
            for chunk in self.answer_for(request):
                await asyncio.sleep(0)
                yield TextDelta(chunk)
            yield TurnResult(model=request.model)

    conv = Conversation(model="gpt-4o", provider=LoopPassPerChunk(words=1000))
    pieces = list(conv.stream("many"))
    assert len(pieces) == 2
    assert pieces[0] == "echo many | images=0 |"
    assert "".join(pieces) == conv.messages[-1].text
    assert conv.messages[-1].text.endswith(" w999 w1000")


def test_ask_async_and_stream_async_on_the_callers_loop() -> None:
    conv, _ = conv_with()

    async def main() -> tuple[Reply, list[str]]:
        reply = await conv.ask_async("one", RED, show=False)
        deltas = [d async for d in conv.stream_async("two")]
        return reply, deltas

    reply, deltas = asyncio.run(main())
    assert reply.text.startswith("echo one | images=1")
    assert "".join(deltas).startswith("echo two | images=0")
    assert [m.role for m in conv.messages] == ["user", "assistant"] * 2


def test_submit_never_blocks_and_the_future_carries_the_message_id() -> None:
    conv, fake = conv_with()
    fake.gate = threading.Event()
    rec = Recorder()
    conv.add_listener(rec)
    fut = conv.submit("hold on", RED)
    assert isinstance(fut, concurrent.futures.Future)
    assert rec.first_delta.wait(10)
    assert not fut.done()  # the provider is held at its gate: submit returned anyway
    assert conv.busy
    live = conv.messages[-1]  # the answer is in the transcript while it streams
    assert live.streaming and live.text == "echo hold on | images=1 |"
    fake.gate.set()
    reply = fut.result(10)
    assert reply.message_id == fut.message_id  # type: ignore[attr-defined]
    assert not conv.busy


def test_ask_works_from_a_worker_thread() -> None:
    conv, _ = conv_with()
    out: list[Reply] = []
    t = threading.Thread(target=lambda: out.append(conv.ask("from a thread", RED)))
    t.start()
    t.join(30)
    assert out and out[0].text.startswith("echo from a thread")


def test_turns_submitted_together_run_one_after_another_in_order() -> None:
    conv, fake = conv_with(words=3, delay=0.001)
    futs = [conv.submit(f"q{i}") for i in range(5)]
    replies = [f.result(30) for f in futs]
    assert [r.text.split(" |")[0] for r in replies] == [f"echo q{i}" for i in range(5)]
    texts = [m.text for m in conv.messages if m.role == "user"]
    assert texts == [f"q{i}" for i in range(5)]
    # each turn saw the previous ones as history (a stateless provider)
    assert [len(r.history) for r in fake.requests] == [0, 2, 4, 6, 8]


def test_mixed_models_per_turn() -> None:
    conv, fake = conv_with()
    conv.ask("a")
    reply = conv.ask("b", model="claude-x")
    assert reply.model == "claude-x"
    assert fake.requests[-1].model == "claude-x"
    assert conv.model == "gpt-4o"
    assert [m.model for m in conv.messages] == ["gpt-4o", "gpt-4o", "claude-x", "claude-x"]


def test_images_for_a_model_that_cannot_see_fail_before_anything_is_sent() -> None:
    conv, fake = conv_with()
    with pytest.raises(NotVisionCapableError, match="cannot see images"):
        conv.ask("look", RED, model="text-only")
    assert fake.requests == [] and fake.uploaded == []
    assert conv.messages == []
    assert conv.ask("no image", model="text-only").text.startswith("echo no image")


def test_prompt_must_be_text() -> None:
    conv, _ = conv_with()
    with pytest.raises(VisionChatError, match="prompt must be a string"):
        conv.ask(RED)  # type: ignore[arg-type]


# -- listeners ---------------------------------------------------------------


def test_listeners_see_every_step_on_the_engine_thread() -> None:
    conv, _ = conv_with(words=5)
    rec = Recorder(conv)
    remove = conv.add_listener(rec)
    reply = conv.ask("hi", RED, BLUE)
    kinds = rec.kinds()
    assert kinds[0] == "turn-start"
    assert kinds[1:3] == ["upload-progress", "upload-progress"]
    assert kinds[-1] == "turn-end"
    assert set(kinds[3:-1]) == {"delta"}
    start = rec.events[0]
    assert start.message_id == reply.message_id
    assert start.message is not None and start.message.streaming
    assert start.user_message is not None and start.user_message.text == "hi"
    assert [e.progress for e in rec.events[1:3]] == [(1, 2), (2, 2)]
    assert "".join(e.text for e in rec.events if e.kind == "delta") == reply.text
    end = rec.events[-1].message
    assert end is not None and end.text == reply.text and not end.streaming
    assert rec.threads == {"visionchat-engine"}
    assert rec.busy_at_end == [False]  # settled turns no longer count as running
    remove()
    conv.ask("again")
    assert rec.kinds() == kinds


def test_a_failing_listener_is_logged_and_never_breaks_a_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conv, _ = conv_with()

    def bad(ev: ConversationEvent) -> None:
        raise RuntimeError("listener bug")

    rec = Recorder()
    conv.add_listener(bad)
    conv.add_listener(rec)
    reply = conv.ask("still fine")
    assert reply.text.endswith("w8")
    assert rec.kinds()[-1] == "turn-end"
    assert "listener bug" in caplog.text


def test_blocking_calls_from_a_listener_are_refused_not_deadlocked() -> None:
    conv, _ = conv_with()
    errors: list[str] = []

    def nested(ev: ConversationEvent) -> None:
        if ev.kind == "turn-end":
            try:
                conv.ask("inside")
            except VisionChatError as exc:
                errors.append(str(exc))

    conv.add_listener(nested)
    conv.ask("outer")
    assert errors and "submit()" in errors[0]


# -- stopping ----------------------------------------------------------------


def test_cancel_keeps_the_partial_answer_marked_interrupted() -> None:
    conv, _ = conv_with(words=400, delay=0.01)
    rec = Recorder()
    conv.add_listener(rec)
    fut = conv.submit("long", RED)
    assert rec.first_delta.wait(10)
    assert conv.cancel() is True
    reply = fut.result(10)
    assert reply.interrupted
    assert reply.text.startswith("echo long")
    assert not reply.text.endswith("w400")
    answer = conv.messages[-1]
    assert answer.interrupted and answer.text == reply.text and not answer.streaming
    assert rec.kinds()[-1] == "turn-end"
    assert rec.events[-1].message is not None and rec.events[-1].message.interrupted
    assert conv.cancel() is False  # nothing left to stop
    assert "partial" in reply._repr_markdown_()


def test_cancelling_a_queued_turn_sends_nothing() -> None:
    conv, fake = conv_with()
    fake.gate = threading.Event()
    rec = Recorder()
    conv.add_listener(rec)
    first = conv.submit("first")
    second = conv.submit("second")
    assert rec.first_delta.wait(10)
    assert conv.cancel(second.message_id) is True  # type: ignore[attr-defined]
    fake.gate.set()
    assert first.result(10).text.startswith("echo first")
    with pytest.raises(TurnCancelledError, match="before it started"):
        second.result(10)
    assert [m.text for m in conv.messages if m.role == "user"] == ["first"]


def test_cancelling_the_future_stops_the_stream_and_keeps_partial_text() -> None:
    conv, _ = conv_with(words=400, delay=0.01)
    rec = Recorder()
    conv.add_listener(rec)
    fut = conv.submit("long")
    assert rec.first_delta.wait(10)
    fut.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(10)
    for _ in range(200):  # the engine settles the message right after
        if not conv.busy:
            break
        threading.Event().wait(0.01)
    answer = conv.messages[-1]
    assert answer.interrupted and answer.text.startswith("echo long")


def test_task_cancellation_of_ask_async_keeps_partial_text() -> None:
    conv, _ = conv_with(words=400, delay=0.01)
    rec = Recorder()
    conv.add_listener(rec)

    async def main() -> None:
        task = asyncio.ensure_future(conv.ask_async("long", show=False))
        while not rec.first_delta.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    for _ in range(200):
        if not conv.busy:
            break
        threading.Event().wait(0.01)
    answer = conv.messages[-1]
    assert answer.interrupted and answer.text.startswith("echo long")


def test_leaving_a_stream_early_stops_the_answer() -> None:
    conv, fake = conv_with(words=400, delay=0.005)
    got = []
    for delta in conv.stream("long"):
        got.append(delta)
        if len(got) == 3:
            break
    assert not conv.busy
    answer = conv.messages[-1]
    assert answer.interrupted
    assert answer.text.startswith("".join(got))
    assert len(fake.requests) == 1


def test_stream_async_closed_early_stops_the_answer() -> None:
    conv, _ = conv_with(words=400, delay=0.005)

    async def main() -> list[str]:
        got = []
        agen = conv.stream_async("long")
        async for delta in agen:
            got.append(delta)
            if len(got) == 3:
                break
        await agen.aclose()
        return got

    got = asyncio.run(main())
    for _ in range(200):
        if not conv.busy:
            break
        threading.Event().wait(0.01)
    assert conv.messages[-1].interrupted
    assert conv.messages[-1].text.startswith("".join(got))


# -- failure, retry, undo, fork ----------------------------------------------


def failing(conv_fake: tuple[Conversation, FakeProvider]) -> tuple[Conversation, FakeProvider]:
    conv, fake = conv_fake
    fake.fail_after = 3
    fake.fail_with = ServerError("The server failed (502); try again in a moment.", status=502)
    return conv, fake


def test_a_failed_turn_keeps_the_prompt_images_and_partial_text() -> None:
    conv, _ = failing(conv_with())
    rec = Recorder()
    conv.add_listener(rec)
    with pytest.raises(ServerError):
        conv.ask("look", RED)
    user, answer = conv.messages
    assert user.text == "look" and user.images == [RED]
    assert answer.error and "502" in answer.error
    assert answer.retryable
    assert answer.text.startswith("echo look")  # the three chunks that arrived
    err = rec.events[-1]
    assert err.kind == "turn-error" and err.retryable and err.error == answer.error
    assert conv.cost().rows[0].status == "error"


def test_retry_reruns_the_last_turn_without_uploading_again() -> None:
    conv, fake = failing(conv_with())
    with pytest.raises(ServerError):
        conv.ask("look", RED, BLUE)
    uploads = list(fake.uploaded)
    assert uploads == [RED.sha256, BLUE.sha256]
    user_id = conv.messages[0].id
    fake.fail_after = None
    rec = Recorder()
    conv.add_listener(rec)
    reply = conv.retry()
    assert reply.text.startswith("echo look | images=2")
    assert fake.uploaded == uploads  # cached by sha256 in the same provider
    assert conv.messages[0].id == user_id
    assert len(conv.messages) == 2 and conv.messages[1].error is None
    assert rec.kinds()[0] == "changed"  # the failed answer was replaced
    assert rec.kinds()[1] == "turn-start"
    # and the turn can be retried with another model, from any thread, as a future
    reply2 = conv.submit_retry(model="claude-x").result(10)
    assert reply2.model == "claude-x" and len(conv.messages) == 2


def test_retry_with_nothing_to_retry() -> None:
    conv, _ = conv_with()
    with pytest.raises(VisionChatError, match="Nothing to retry"):
        conv.retry()
    with pytest.raises(VisionChatError, match="Nothing to retry"):
        conv.submit_retry()


def test_undo_drops_the_last_exchange() -> None:
    conv, _ = conv_with()
    conv.ask("one")
    conv.ask("two", RED)
    rec = Recorder()
    conv.add_listener(rec)
    removed = conv.undo()
    assert removed[0].text == "two"
    assert [m.text for m in conv.messages if m.role == "user"] == ["one"]
    assert rec.kinds() == ["changed"]
    conv.undo()
    with pytest.raises(VisionChatError, match="Nothing to undo"):
        conv.undo()


def test_undo_and_clear_refuse_while_a_turn_runs() -> None:
    conv, fake = conv_with()
    fake.gate = threading.Event()
    rec = Recorder()
    conv.add_listener(rec)
    fut = conv.submit("hold")
    assert rec.first_delta.wait(10)
    with pytest.raises(VisionChatError, match="still running"):
        conv.undo()
    with pytest.raises(VisionChatError, match="still running"):
        conv.fork()
    fake.gate.set()
    fut.result(10)
    conv.clear()
    assert conv.messages == [] and conv.turns == 0


def test_server_side_history_is_not_resent_but_undo_and_fork_start_fresh() -> None:
    conv, fake = conv_with(keeps_history=True)
    conv.ask("one", RED)
    conv.ask("two")
    assert [len(r.history) for r in fake.requests] == [0, 0]
    assert conv.estimate("three").history_tokens == 0  # nothing old is sent again
    assert conv.session == {"conversation_id": "conv-1"}
    branch = conv.fork()
    assert branch.session == {}
    assert conv.session == {"conversation_id": "conv-1"}
    assert branch.estimate("three in the branch").history_tokens > 255  # resent, image too
    branch.ask("three in the branch")
    req = fake.requests[-1]
    assert req.session == {}  # a new server conversation, not the original's
    assert [h.text for h in req.history] == [
        "one",
        conv.messages[1].text,
        "two",
        conv.messages[3].text,
    ]
    assert req.history[0].images == (RED,)
    assert branch.session == {"conversation_id": "conv-2"}
    # the original continues its own server conversation, without history
    conv.ask("four")
    assert fake.requests[-1].session == {"conversation_id": "conv-1"}
    assert fake.requests[-1].history == []
    assert len(conv.messages) == 6 and len(branch.messages) == 6
    # undo forgets the server conversation, which still remembers the dropped turn
    conv.undo()
    conv.ask("five")
    assert fake.requests[-1].session == {}
    assert len(fake.requests[-1].history) == 4


def test_fork_is_independent_and_shares_the_upload_cache() -> None:
    conv, fake = conv_with()
    conv.ask("one", RED)
    branch = conv.fork()
    branch.ask("two", RED)
    assert fake.uploaded == [RED.sha256]
    assert len(conv.messages) == 2 and len(branch.messages) == 4
    assert branch.provider is conv.provider
    branch.messages[0].text = "edited"  # messages are copies
    assert conv.messages[0].text == "one"


def test_failed_exchanges_are_left_out_of_history() -> None:
    conv, fake = failing(conv_with())
    with pytest.raises(ServerError):
        conv.ask("broken")
    fake.fail_after = None
    conv.ask("next")
    assert fake.requests[-1].history == []


# -- context budget ----------------------------------------------------------


def test_oldest_images_are_dropped_first_to_fit_the_context_and_the_reply_says_so() -> None:
    # each 512x512 image costs 255 tokens (85 + 170 x 1 tile); a quarter of a
    # small context is kept free for the answer
    conv, fake = conv_with(context_tokens=2000, words=2)
    imgs = [make_image((i * 40, 0, 0), (512, 512)) for i in range(4)]
    for i, img in enumerate(imgs[:3]):
        conv.ask(f"image {i}", img)
    reply = conv.ask("and this one?", imgs[3])
    req = fake.requests[-1]
    assert req.images == [imgs[3]]
    sent = [img for turn in req.history for img in turn.images]
    assert sent == imgs[:3] and reply.notices == ()  # everything fits in 1500
    # 750 for the prompt: 259 for this turn, 765 for the old images and ~30 of text
    conv2, fake2 = conv_with(context_tokens=1000, words=2)
    for i, img in enumerate(imgs[:3]):
        conv2.ask(f"image {i}", img)
    reply2 = conv2.ask("and this one?", imgs[3])
    hist = fake2.requests[-1].history
    kept = [img for turn in hist for img in turn.images]
    assert kept == imgs[2:3]  # the newest earlier image survives
    assert len(hist) == 6  # every exchange's text is still there
    assert "image(s) shared here left out" in hist[0].text
    assert len(reply2.notices) == 1 and "Left out 2 earlier image(s)" in reply2.notices[0]
    assert conv2.messages[-1].notices == list(reply2.notices)


def test_outside_a_kernel_the_notice_is_also_a_logged_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conv, _ = conv_with(context_tokens=100, words=20)
    for i in range(3):
        conv.ask(f"question {i}")
    with caplog.at_level(logging.INFO, logger="visionchat"):
        reply = conv.ask("last")
    logged = [r for r in caplog.records if "oldest exchange" in r.getMessage()]
    assert reply.notices and len(logged) == 1 and logged[0].levelno == logging.WARNING


def test_whole_exchanges_go_when_images_are_not_enough() -> None:
    conv, fake = conv_with(context_tokens=100, words=20)
    for i in range(4):
        conv.ask(f"question {i}")
    reply = conv.ask("last")
    hist = fake.requests[-1].history
    assert 0 < len(hist) < 8
    assert hist[-2].text == "question 3"
    assert any("oldest exchange" in n for n in reply.notices)


# -- cost --------------------------------------------------------------------


def test_estimate_before_sending_and_the_cost_table() -> None:
    conv, _ = conv_with()
    big = make_image((1, 2, 3), (1024, 1024))
    est = conv.estimate("x" * 40, big)
    assert est.text_tokens == 10
    # 1024x1024 -> shortest side 768 -> 768x768 -> 4 tiles -> 85 + 680
    assert est.image_tokens == 765
    assert est.history_tokens == 0
    assert est.price == pytest.approx(775 / 1000 * 2.0)
    reply = conv.ask("x" * 40, big)
    assert reply.estimate == est
    conv.ask("y" * 8)
    report = conv.cost()
    assert [r.turn for r in report.rows] == [1, 2]
    assert report.credits == 25.0
    second = report.rows[1]
    assert second.estimated_tokens is not None and second.estimated_tokens > 2  # history counted
    text = repr(report)
    assert "total" in text and "25" in text and "gpt-4o" in text
    assert "<table" in report._repr_html_()


# -- provider choice, repr and the key -----------------------------------------


def test_repr_shows_model_provider_and_turns_never_the_key() -> None:
    fake = FakeProvider()
    conv = Conversation(model="gpt-4o", provider=fake, api_key="sk-very-secret-123")
    conv.ask("hello")
    text = repr(conv)
    assert "gpt-4o" in text and "fake" in text and "turns=1" in text
    assert "secret" not in text
    assert conv.provider_name == "fake"
    assert len(conv) == 1


def test_unknown_provider_name() -> None:
    with pytest.raises(VisionChatError, match="Unknown provider 'nope'"):
        Conversation(provider="nope")


def test_model_setter_and_models_listing() -> None:
    conv, _ = conv_with()
    conv.model = "claude-x"
    assert conv.ask("hi").model == "claude-x"
    with pytest.raises(VisionChatError):
        conv.model = ""
    ids = [m.id for m in conv.models()]
    assert ids == ["gpt-4o", "claude-x"]  # the text-only model is not offered
    assert conv.model_info("gpt-4o") is not None


# -- a plain script ------------------------------------------------------------


def test_every_call_in_a_plain_script_process() -> None:
    tests = Path(__file__).resolve().parent
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(tests)!r})
        from test_conversation_fakes import FakeProvider, make_image
        from visionchat.conversation import Conversation
        conv = Conversation(provider=FakeProvider(words=3, delay=0.001))
        print(conv.ask("a", make_image()).text)
        print("".join(conv.stream("b")))
        async def main():
            r = await conv.ask_async("c")
            return r.text + "/" + "".join([d async for d in conv.stream_async("d")])
        print(asyncio.run(main()))
        print(conv)
        print("IPython" in sys.modules)  # the core never imports it
        """
    )
    src = str(tests.parent / "src")
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "echo a | images=1 | w1 w2 w3",
        "echo b | images=0 | w1 w2 w3",
        "echo c | images=0 | w1 w2 w3/echo d | images=0 | w1 w2 w3",
        "<Conversation model='gpt-4o' provider='fake' turns=4>",
        "False",
    ]


# -- choosing the backend from the environment ---------------------------------


class _Made:
    """Stands in for a provider class: records how it was built."""

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.keeps_history = False
        self.args, self.kwargs = args, kwargs

    def model_info(self, model: str) -> None:
        return None


@pytest.fixture
def fake_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    for module, cls, name in [
        ("oneminai", "OneMinAIProvider", "1min"),
        ("openai", "OpenAIProvider", "openai"),
        ("offline", "OfflineProvider", "offline"),
    ]:
        mod = types.ModuleType(f"visionchat.providers.{module}")
        setattr(mod, cls, lambda *a, _n=name, **kw: _Made(_n, *a, **kw))
        monkeypatch.setitem(sys.modules, f"visionchat.providers.{module}", mod)
    for var in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.usefixtures("fake_backends")
@pytest.mark.parametrize(
    ("env", "kwargs", "name", "args", "made_kwargs"),
    [
        ({"ONEMIN_API_KEY": "k1"}, {}, "1min", ("k1",), {"api": "current"}),
        ({"ONE_MIN_AI_API_KEY": "k2"}, {"api": "legacy"}, "1min", ("k2",), {"api": "legacy"}),
        (
            {"ONEMIN_API_KEY": "k1", "OPENAI_API_KEY": "sk-openai-9"},
            {"base_url": "http://127.0.0.1:9"},
            "1min",
            ("k1",),
            {"api": "current", "base_url": "http://127.0.0.1:9"},
        ),
        ({"OPENAI_API_KEY": "o1"}, {}, "openai", ("o1",), {}),
        (
            {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"},
            {},
            "openai",
            (None,),
            {"base_url": "http://127.0.0.1:11434/v1"},
        ),
        ({}, {"api_key": "given"}, "1min", ("given",), {"api": "current"}),
        ({}, {"provider": "openai", "api_key": "x"}, "openai", ("x",), {}),
        ({"ONEMIN_API_KEY": "k1"}, {"provider": "offline"}, "offline", (), {}),
        ({}, {}, "offline", (), {}),
    ],
)
def test_provider_choice(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    kwargs: dict[str, Any],
    name: str,
    args: tuple[Any, ...],
    made_kwargs: dict[str, Any],
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    conv = Conversation(**kwargs)
    made = conv.provider
    assert isinstance(made, _Made)
    assert (made.name, made.args, made.kwargs) == (name, args, made_kwargs)
    assert conv.provider_name == name
    for secret in [*env.values(), kwargs.get("api_key")]:
        if secret:
            assert secret not in repr(conv)


@pytest.mark.usefixtures("fake_backends")
def test_the_offline_fallback_says_so_once(capsys: pytest.CaptureFixture[str]) -> None:
    import visionchat.conversation as mod

    mod._offline_notice_shown = False
    Conversation()
    Conversation()
    err = capsys.readouterr().err
    assert err.count("offline demo model") == 1
    assert "ONEMIN_API_KEY" in err and len(err.strip().splitlines()) == 1
    capsys.readouterr()
    Conversation(provider="offline")  # asked for explicitly: no notice
    assert capsys.readouterr().err == ""


def test_web_search_reaches_the_provider() -> None:
    conv, fake = conv_with()
    conv.ask("news?", web_search=True)
    assert fake.requests[-1].web_search is True
    assert conv.messages[0].web_search is True


class _Unlisted(FakeProvider):
    """Knows no model itself and cannot list them: the catalog must step in."""

    def model_info(self, model: str) -> None:
        return None

    async def list_models(self) -> list[Any]:
        raise ServerError("listing is down", status=503)


def test_the_catalog_steps_in_for_unknown_models_and_failed_listings() -> None:
    conv = Conversation(model="claude-3-sonnet", provider=_Unlisted())
    info = conv.model_info()
    assert info is not None and info.context_tokens == 200_000 and info.vendor == "anthropic"
    big = make_image((5, 5, 5), (1568, 1568))
    # the Anthropic rule: capped at 1.15 MP (1072x1072), then w*h/750 -- not OpenAI tiles
    assert conv.estimate("", big).image_tokens == 1533
    ids = [m.id for m in conv.models()]
    assert "gpt-4o" in ids and "offline-demo" not in ids


def test_an_image_prepared_for_a_larger_limit_is_fitted_to_the_model() -> None:
    conv, fake = conv_with(words=3, max_image_edge=1000)
    big = make_image((0, 120, 0), (2400, 1200))  # prepared elsewhere, above the limit
    reply = conv.ask("look", big)
    sent = fake.requests[-1].images[0]
    assert (sent.width, sent.height) == (1000, 500)
    assert reply.images[0].width == 1000 and conv.messages[0].images[0].width == 1000
    small = make_image((0, 120, 0), (300, 200))
    conv.ask("and this", small)
    assert fake.requests[-1].images[0] is small  # within the limit: used as it is


def test_images_are_sent_at_what_the_model_keeps() -> None:
    class CatalogLimits(FakeProvider):
        def model_info(self, model: str) -> None:
            return None  # the catalog's per-vendor limits apply

    fake = CatalogLimits(words=3)
    conv = Conversation(model="gpt-4o", provider=fake)
    conv.ask("square", make_image((9, 9, 9), (2048, 2048)))
    sent = fake.requests[-1].images[0]
    assert (sent.width, sent.height) == (768, 768)  # OpenAI's high detail keeps 768 a side
    conv.ask("wide", make_image((9, 9, 9), (2400, 1200)), model="claude-3-5-sonnet-20240620")
    sent = fake.requests[-1].images[0]
    assert sent.width <= 1568 and sent.width * sent.height <= 1_150_000  # about 1.15 MP
