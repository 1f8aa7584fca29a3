"""Every public Conversation call end to end against the real offline demo model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from test_conversation_fakes import make_image
from visionchat.conversation import Conversation, ConversationEvent
from visionchat.providers.offline import MODEL_ID, OfflineProvider

RED = make_image((220, 20, 20), (64, 48))
BLUE = make_image((20, 20, 220), (80, 60))


def offline(words_per_second: float = 0.0) -> Conversation:
    return Conversation(provider=OfflineProvider(words_per_second=words_per_second))


def test_ask_stream_and_async_calls() -> None:
    conv = offline()
    assert conv.model == MODEL_ID  # the offline model is the default there
    reply = conv.ask("what colour is this?", RED)
    assert "64×48" in reply.text and "red" in reply.text
    assert "offline demo model" in reply.text
    assert reply.model == MODEL_ID and reply.usage is not None
    # paced slower than the 10 ms hand-off interval merges, so it visibly streams
    conv.provider.words_per_second = 200  # type: ignore[attr-defined]
    deltas = list(conv.stream("and this one?", BLUE))
    assert len(deltas) > 10
    conv.provider.words_per_second = 0  # type: ignore[attr-defined]
    assert "80×60" in "".join(deltas) and "blue" in "".join(deltas)

    async def main() -> tuple[str, str]:
        r = await conv.ask_async("both again?", RED, BLUE, show=False)
        s = "".join([d async for d in conv.stream_async("thanks")])
        return r.text, s

    both, thanks = asyncio.run(main())
    assert "64×48" in both and "80×60" in both
    assert "offline demo model" in thanks
    assert conv.turns == 4
    assert conv.submit("via submit", RED).result(30).text == conv.messages[-1].text


def test_cancel_keeps_partial_and_retry_completes_it() -> None:
    conv = offline(words_per_second=40)
    started = threading.Event()
    conv.add_listener(lambda ev: started.set() if ev.kind == "delta" else None)
    fut = conv.submit("describe slowly", RED)
    assert started.wait(30)
    conv.cancel()
    partial = fut.result(30)
    assert partial.interrupted and partial.text
    assert "offline demo model" not in partial.text  # the closing line never came
    conv.provider.words_per_second = 0  # type: ignore[attr-defined]
    full = conv.retry()
    assert not full.interrupted and full.text.startswith(partial.text)
    assert "offline demo model" in full.text
    assert conv.turns == 1


def test_history_undo_fork_and_events() -> None:
    conv = offline()
    conv.ask("first", RED)
    second = conv.ask("second")
    assert "1 earlier question" in second.text  # the model got the history
    branch = conv.fork()
    kinds: list[str] = []

    def listen(ev: ConversationEvent) -> None:
        kinds.append(ev.kind)

    branch.add_listener(listen)
    branch.undo()
    third = branch.ask("third", BLUE)
    assert "1 earlier question" in third.text
    assert kinds[0] == "changed" and kinds[1] == "turn-start" and kinds[-1] == "turn-end"
    assert "upload-progress" in kinds
    assert conv.turns == 2 and branch.turns == 2


def test_save_load_export_and_cost(tmp_path: Path) -> None:
    conv = offline()
    conv.ask("look", RED, BLUE)
    path = conv.save(tmp_path / "offline.json")
    loaded = Conversation.load(path)  # the file says "offline": no key needed
    assert loaded.provider_name == "offline"
    assert loaded.messages == conv.messages
    assert [i.data for i in loaded.messages[0].images] == [RED.data, BLUE.data]
    assert RED.to_data_url() in loaded.to_html()
    assert "64×48" in loaded.to_markdown()
    report = loaded.cost()
    assert report.rows[0].input_tokens is not None
    assert report.estimated_price == 0.0  # the offline model is free


def test_a_script_with_no_key_gets_the_offline_model_and_a_notice() -> None:
    tests = Path(__file__).resolve().parent
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tests)!r})
        from test_conversation_fakes import make_image
        from visionchat.conversation import Conversation
        conv = Conversation()
        conv.provider.words_per_second = 0
        print(conv.ask("hello", make_image()).text.splitlines()[0])
        print(conv)
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["PYTHONPATH"] = str(tests.parent / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "**The image**: 64×48 px (landscape), looks like a **screenshot or flat graphic**.",
        "<Conversation model='offline-demo' provider='offline' turns=1>",
    ]
    assert out.stderr.count("offline demo model") == 1


@pytest.mark.parametrize("threads", [4])
def test_conversations_in_several_threads_at_once(threads: int) -> None:
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        conv = offline()
        results[i] = conv.ask(f"thread {i}", make_image((i * 50, 0, 0))).text

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(results) == list(range(threads))
    assert all(f"“thread {i}”" in results[i] for i in range(threads))


def test_kernel_objects_are_prepared_at_the_models_image_limit() -> None:
    np = pytest.importorskip("numpy")
    from PIL import Image

    conv = offline()
    limit = conv.model_info().max_image_edge  # type: ignore[union-attr]
    assert limit is not None
    big = np.zeros((1500, 3000, 3), dtype=np.uint8)
    big[..., 1] = 200
    photo = Image.new("RGB", (200, 100), (250, 250, 0))
    reply = conv.ask("what are these?", big, photo)
    first, second = reply.images
    assert max(first.width, first.height) == limit and first.resized
    assert (second.width, second.height) == (200, 100)
    assert "green" in reply.text and "yellow" in reply.text

    async def main() -> int:
        # prepared off the engine loop for async callers
        r = await conv.ask_async("and this?", big, show=False)
        return r.images[0].width

    assert asyncio.run(main()) == limit
    assert conv.messages[-2].images[0].sha256 == first.sha256  # same bytes, cached upload
