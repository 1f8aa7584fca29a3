"""The offline demo model: true measurements, deterministic text, paced streaming."""

from __future__ import annotations

import asyncio
import hashlib
import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from visionchat.images import PreparedImage
from visionchat.providers.base import HistoryTurn, TextDelta, TurnRequest, TurnResult
from visionchat.providers.offline import MODEL_ID, OfflineProvider

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def prepared(img: Image.Image, fmt: str = "PNG") -> PreparedImage:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    return PreparedImage(
        data=data,
        mime="image/png" if fmt == "PNG" else "image/jpeg",
        width=img.width,
        height=img.height,
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=data,
        thumbnail_mime="image/png" if fmt == "PNG" else "image/jpeg",
        source="test",
        original_size=img.size,
        original_format=fmt,
        resized=False,
    )


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (120, 80)) -> PreparedImage:
    return prepared(Image.new("RGB", size, rgb))


def line_plot() -> PreparedImage:
    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    ax.plot([0, 1, 2, 3], [1, 3, 2, 5])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return prepared(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def photo() -> PreparedImage:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:240, 0:320]
    arr = np.stack([x / 320 * 200, y / 240 * 160, np.full(x.shape, 90.0)], axis=-1) + rng.normal(
        0, 22, (240, 320, 3)
    )
    return prepared(Image.fromarray(arr.clip(0, 255).astype("uint8")), "JPEG")


def run(provider: OfflineProvider, request: TurnRequest) -> tuple[str, TurnResult]:
    async def go() -> tuple[str, TurnResult]:
        text, result = "", None
        async for ev in provider.stream(request):
            if isinstance(ev, TextDelta):
                text += ev.text
            elif isinstance(ev, TurnResult):
                result = ev
        assert result is not None
        return text, result

    return asyncio.run(go())


def ask(prompt: str, *images: PreparedImage, history: tuple[HistoryTurn, ...] = ()) -> str:
    req = TurnRequest(prompt=prompt, model=MODEL_ID, images=images, history=history)
    return run(OfflineProvider(instant=True), req)[0]


def test_answers_say_what_they_are_and_how_to_switch() -> None:
    text = ask("What is this?", solid((220, 20, 20)))
    assert "offline demo model" in text
    assert "ONEMIN_API_KEY" in text and "OPENAI_API_KEY" in text


def test_a_red_image_is_called_red_and_measured() -> None:
    text = ask("describe", solid((220, 20, 20), (200, 100)))
    assert "red" in text and "200×100" in text and "landscape" in text
    assert "blue" not in text.split("ONEMIN")[0]


def test_different_images_give_different_measurements() -> None:
    assert ask("describe", solid((20, 30, 200))) != ask("describe", solid((240, 230, 30)))
    assert "blue" in ask("describe", solid((20, 30, 200)))
    assert "yellow" in ask("describe", solid((240, 230, 30)))


def test_a_plot_is_a_chart_and_a_noisy_picture_a_photograph() -> None:
    assert "chart or diagram" in ask("What is odd in this plot?", line_plot())
    assert "photograph" in ask("describe", photo())


def test_comparing_two_images() -> None:
    text = ask("compare these", solid((10, 10, 10)), solid((240, 240, 240), (60, 60)))
    assert "Comparison of image 1 and image 2" in text
    assert "Image 2 is brighter" in text and "Sizes differ" in text


def test_it_says_it_cannot_read_text() -> None:
    assert "cannot read text" in ask("What does the title say?", line_plot())


def test_it_mentions_earlier_turns() -> None:
    history = (HistoryTurn("user", "how bright is it?"), HistoryTurn("assistant", "bright"))
    assert "how bright is it?" in ask("and now?", solid((1, 2, 3)), history=history)


def test_deterministic() -> None:
    img = photo()
    assert ask("describe", img) == ask("describe", img)


def test_streaming_is_paced_by_words_per_second() -> None:
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)

    provider = OfflineProvider(words_per_second=40, sleep=fake_sleep)
    req = TurnRequest(prompt="describe", model=MODEL_ID, images=[solid((9, 9, 9))])
    text, result = run(provider, req)
    words = len(text.split())
    assert len(pauses) >= words - 1
    assert all(p == pytest.approx(1 / 40) for p in pauses)
    assert result.model == MODEL_ID and result.usage and result.usage.output_tokens


def test_instant_means_no_pauses() -> None:
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)

    run(OfflineProvider(instant=True, sleep=fake_sleep), TurnRequest("hi", MODEL_ID))
    assert pauses == []


def test_no_image_says_how_to_attach_one() -> None:
    assert "Attach one" in ask("hello")


def test_one_line_ask_about_a_figure_still_being_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    import visionchat

    for key in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VISIONCHAT_OFFLINE_WPS", "0")
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 0])
    reply = visionchat.ask(fig, "What is odd in this plot?")
    assert "chart or diagram" in reply.text and reply.model == MODEL_ID
    assert plt.fignum_exists(fig.number)  # still open for more drawing
    ax.set_title("now with a title")
    assert visionchat.ask(fig, "and now?").text
    plt.close(fig)
    with pytest.raises(visionchat.VisionChatError, match="question last"):
        visionchat.ask("What?", fig)
