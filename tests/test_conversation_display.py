"""The notebook's live answer: bounded work per chunk, exact Markdown left behind.

Driven by a simulated clock and a recording publisher, so the figures are
deterministic (no timing on this machine is involved).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from visionchat._notebook_display import LiveAnswer
from visionchat.conversation import Reply


class Recorder:
    def __init__(self) -> None:
        self.outputs: list[dict[str, str]] = []
        self.sends: list[int] = []

    def new(self, bundle: dict[str, str]) -> Any:
        self.outputs.append(dict(bundle))
        self.sends.append(sum(len(v) for v in bundle.values()))
        return len(self.outputs) - 1

    def update(self, handle: Any, bundle: dict[str, str]) -> None:
        self.outputs[handle] = dict(bundle)
        self.sends.append(sum(len(v) for v in bundle.values()))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def reply_text(paragraphs: int, seed: int) -> str:
    """Model-like Markdown: prose, lists and code blocks with blank lines inside."""
    rnd = random.Random(seed)
    parts = []
    for _ in range(paragraphs):
        kind = rnd.random()
        if kind < 0.15:
            lines = [f"x{j} = compute({j})" for j in range(rnd.randint(3, 30))]
            parts.append("```python\n" + "\n".join(lines) + "\n\nprint(x)\n```")
        elif kind < 0.35:
            items = [
                f"- item {j}: " + "word " * rnd.randint(3, 15) for j in range(rnd.randint(2, 8))
            ]
            parts.append("\n".join(items))
        else:
            words = rnd.choices(
                ["the", "chart", "shows", "a", "rising", "trend"], k=rnd.randint(20, 120)
            )
            parts.append(" ".join(words) + ".")
    return "\n\n".join(parts)


def play(text: str, chars_per_second: float, chunk: int = 4) -> tuple[LiveAnswer, Recorder]:
    """Feed ``text`` as a stream would, ticking whenever the display asks to."""
    clock, rec = Clock(), Recorder()
    live = LiveAnswer(rec, clock=clock)
    step = chunk / chars_per_second
    for i in range(0, len(text), chunk):
        arrival = clock.t + step
        while (timeout := live.poll_timeout()) is not None and clock.t + timeout <= arrival:
            clock.t += timeout
            live.tick()
        clock.t = arrival
        live.feed(text[i : i + chunk])
    live.finish(Reply(text=text, model="m", message_id="x"))
    return live, rec


@pytest.mark.parametrize("speed", [150, 600, 3000])
def test_total_bytes_stay_a_small_multiple_of_the_reply(speed: int) -> None:
    ratios, biggest = [], []
    for paragraphs in (5, 20, 60):
        text = reply_text(paragraphs, seed=paragraphs)
        live, rec = play(text, speed)
        assert "".join(o["text/markdown"] for o in rec.outputs) == text
        ratios.append(live.bytes_sent / len(text))
        biggest.append(max(rec.sends))
    # bytes per reply char do not grow with the reply (an O(n^2) display would
    # grow ~12x from the short to the long reply here)
    assert max(ratios) < 16
    assert ratios[-1] < 2 * ratios[0] + 1
    # nor does the largest single update
    assert biggest[-1] < 2 * biggest[0] + 500


def test_whole_rerendering_would_have_been_quadratic() -> None:
    """The control: the same reply re-sent whole every 50 ms costs far more."""
    text = reply_text(60, seed=60)
    live, _ = play(text, 600)
    naive = sum(len(text[:i]) for i in range(0, len(text), int(600 * 0.05)))
    assert naive > 20 * live.bytes_sent


def test_code_fences_are_never_split_and_outputs_are_settled_markdown() -> None:
    code = "```python\n" + "\n\n".join(f"line_{i} = {i}" * 5 for i in range(80)) + "\n```\n\n"
    text = "Intro paragraph " * 40 + "\n\n" + code + "After the code. " * 30
    _, rec = play(text, 1000)
    for out in rec.outputs:
        assert out["text/markdown"].count("```") % 2 == 0  # each output holds whole fences
        assert out.get("text/plain") == out["text/markdown"]
    assert "".join(o["text/markdown"] for o in rec.outputs) == text
    assert len(rec.outputs) == 3


def test_tilde_fences_and_indented_closers() -> None:
    text = "p " * 250 + "\n\n~~~~\na\n\nb\n~~~\nc\n\n   ~~~~\n\nafter " * 3
    _, rec = play(text, 1000)
    assert "".join(o["text/markdown"] for o in rec.outputs) == text
    fence_output = next(o["text/markdown"] for o in rec.outputs if "~~~~" in o["text/markdown"])
    assert "\nb\n~~~\nc\n" in fence_output


def test_notes_for_interrupted_and_trimmed_replies() -> None:
    rec = Recorder()
    live = LiveAnswer(rec, clock=Clock())
    live.feed("partial answer")
    reply = Reply(
        text="partial answer",
        model="m",
        message_id="x",
        interrupted=True,
        notices=("Left out 2 images.",),
    )
    live.finish(reply)
    notes = rec.outputs[-1]["text/markdown"]
    assert "partial" in notes and "Left out 2 images." in notes
    rec2 = Recorder()
    live2 = LiveAnswer(rec2, clock=Clock())
    live2.feed("some text")
    live2.abort(Reply(text="some text", model="m", message_id="x"), KeyboardInterrupt())
    assert rec2.outputs[0]["text/markdown"] == "some text"
    assert "conv.last_reply" in rec2.outputs[-1]["text/markdown"]


def test_an_interrupt_while_publishing_arrives_after_the_output_is_kept() -> None:
    import os
    import signal
    import time

    from visionchat._notebook_display import _interrupt_after

    reached_end = False
    with pytest.raises(KeyboardInterrupt), _interrupt_after():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of publishing
        time.sleep(0.05)  # the handler runs here; no KeyboardInterrupt yet
        reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _interrupt_after():  # an ignored Ctrl-C stays ignored
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, previous)
