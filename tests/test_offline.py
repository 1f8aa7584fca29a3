"""The offline demo model: true measurements, deterministic text, paced streaming."""

from __future__ import annotations

import asyncio
import re

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw

from test_offline_measure import sales_figure
from visionchat.images import PreparedImage, prepare_image
from visionchat.providers.base import (
    HistoryTurn,
    Provider,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
)
from visionchat.providers.offline import MODEL_ID, SWITCH_HINT, OfflineProvider, intents

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (120, 80)) -> PreparedImage:
    return prepare_image(Image.new("RGB", size, rgb))


def sales_plot(labelled: bool = False) -> PreparedImage:
    fig = sales_figure(labelled)
    img = prepare_image(fig)
    plt.close(fig)
    return img


def photo() -> PreparedImage:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:240, 0:320]
    arr = np.stack([x / 320 * 200, y / 240 * 160, np.full(x.shape, 90.0)], axis=-1)
    arr += rng.normal(0, 22, (240, 320, 3))
    return prepare_image(Image.fromarray(arr.clip(0, 255).astype("uint8")))


def events(provider: OfflineProvider, request: TurnRequest) -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        return [ev async for ev in provider.stream(request)]

    return asyncio.run(go())


def run(provider: OfflineProvider, request: TurnRequest) -> tuple[str, TurnResult]:
    evs = events(provider, request)
    assert isinstance(evs[-1], TurnResult)
    return "".join(ev.text for ev in evs if isinstance(ev, TextDelta)), evs[-1]


def ask(
    prompt: str,
    *images: PreparedImage,
    history: tuple[HistoryTurn, ...] = (),
    web_search: bool = False,
) -> str:
    req = TurnRequest(prompt, MODEL_ID, images, history, web_search=web_search)
    return run(OfflineProvider(instant=True), req)[0]


def test_it_is_a_provider_with_no_key_and_no_network() -> None:
    provider = OfflineProvider()
    assert isinstance(provider, Provider)
    assert provider.name == "offline" and provider.keeps_history is False
    info = provider.model_info("anything")
    assert info is not None and info.id == MODEL_ID and info.vision
    assert [m.id for m in asyncio.run(provider.list_models())] == [MODEL_ID]
    img = solid((1, 2, 3))
    assert asyncio.run(provider.upload(img)) == f"offline:{img.sha256}"


def test_answers_say_what_they_are_and_how_to_switch_last() -> None:
    text = ask("What is this?", solid((220, 20, 20)))
    assert text.endswith(SWITCH_HINT)
    assert "offline demo model" in SWITCH_HINT and "ONEMIN_API_KEY" in SWITCH_HINT
    assert "OPENAI_API_KEY" in SWITCH_HINT and "OPENAI_BASE_URL" in SWITCH_HINT
    assert text.count("offline demo model") == 1  # said once, at the end


def test_a_red_image_is_called_red_and_measured() -> None:
    text = ask("describe", solid((220, 20, 20), (200, 100)))
    assert text.startswith("**The image**: 200×100 px (landscape)")
    assert "red (#dc1414, 100%)" in text
    assert "blue" not in text.split(SWITCH_HINT)[0]


def test_different_images_give_different_measurements() -> None:
    blue, yellow = ask("describe", solid((20, 30, 200))), ask("describe", solid((240, 230, 30)))
    assert blue != yellow
    assert "Main colours: blue" in blue and "Main colours: yellow" in yellow
    assert "very dark" not in yellow and "bright" in yellow


def test_asked_for_a_table_it_tabulates_each_image_s_measurements() -> None:
    text = ask("Show the measurements as a table", solid((220, 20, 20), (200, 100)), photo())
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| Measurement | Image 1 | Image 2 |"
    assert table[1] == "|---|---|---|"
    assert "| Size (px) | 200×100 | " in text
    assert "| Main colour | red (#dc1414) | " in text
    assert all(line.count("|") == 4 for line in table)  # every row has a cell per image
    assert "| Measurement" not in ask("describe", solid((220, 20, 20)))


def test_a_plot_is_a_chart_and_a_noisy_picture_a_photograph() -> None:
    chart = ask("describe", sales_plot())
    assert "looks like a **chart or diagram**" in chart and "a blue line (#1f77b4)" in chart
    assert "looks like a **photograph**" in ask("describe", photo())


def test_what_is_odd_in_a_plot_points_at_the_outlier_and_the_missing_labels() -> None:
    text = ask("What is odd in this plot? What is missing to read it?", sales_plot())
    found = re.search(r"lone spike up at about (\d+)% of the way across", text)
    assert found, text
    assert abs(int(found.group(1)) - 59) <= 2  # data index 12 of 0..20, with 5% margins
    assert "rises overall" in text
    assert "it may need a title, an x-axis label and a y-axis label" in text
    assert "I cannot read text" in text  # "read" asks for text too


def test_a_follow_up_compares_with_the_earlier_figure() -> None:
    before, after = sales_plot(), sales_plot(labelled=True)
    history = (
        HistoryTurn("user", "What is missing to read it?", (before,)),
        HistoryTurn("assistant", "..."),
    )
    text = ask("Is it clearer now?", after, history=history)
    assert "Against the most similar earlier image** (from your 1st message)" in text
    assert "This one adds a title, an x-axis label and a y-axis label." in text


def test_the_same_picture_again_measures_the_same() -> None:
    yy, xx = np.mgrid[0:200, 0:300] / 200.0
    img = np.stack([xx / 1.5, yy, 0.5 + 0 * xx], axis=-1)
    first, channel_first = prepare_image(img), prepare_image(np.transpose(img, (2, 0, 1)))
    history = (HistoryTurn("user", "Describe this image.", (first,)), HistoryTurn("assistant", "."))
    text = ask("Same image, channel-first. Anything different?", channel_first, history=history)
    assert "Every measurement is the same: most likely the same picture." in text


def test_comparing_two_images() -> None:
    day = Image.new("RGB", (320, 200), (135, 190, 240))
    ImageDraw.Draw(day).ellipse((240, 20, 290, 70), fill=(255, 220, 60))
    night = Image.new("RGB", (160, 100), (15, 20, 50))
    text = ask("Which one is brighter, and what differs?", prepare_image(day), prepare_image(night))
    assert "**Image 1 against image 2** (measured)" in text
    assert "Image 2 is darker by" in text and "Sizes differ: 320×200 vs 160×100" in text
    assert "Main colour: light blue vs navy." in text
    assert "Vivid colours only in image 1: light blue and yellow." in text
    assert "attach two images" in ask("compare", solid((9, 9, 9)))


def test_counting_and_colours() -> None:
    fig, ax = plt.subplots()
    ax.bar(
        range(5),
        [3, 1, 4, 1, 5],
        color=["tab:blue", "tab:orange", "tab:blue", "tab:red", "tab:blue"],
    )
    bars = prepare_image(fig)
    plt.close(fig)
    text = ask("How many bars are there?", bars)
    assert "Counted in the plot area, one colour at a time: 5 bars." in text
    colours = ask("Which colours are used?", bars)
    assert "The dominant colour is **white**" in colours
    assert "Vivid colours: blue (#1f77b4" in colours and "orange (#ff7f0e" in colours
    assert "red (#d62728" in colours
    assert "I cannot count objects" in ask("how many cats?", photo())


def test_it_says_it_cannot_read_text() -> None:
    assert "I cannot read text in images" in ask("What does the title say?", sales_plot())


def test_it_mentions_earlier_turns_and_reuses_their_image() -> None:
    red = solid((220, 20, 20))
    history = (
        HistoryTurn("user", "how bright is it?", (red,)),
        HistoryTurn("assistant", "bright"),
        HistoryTurn("user", "and the colour?"),
        HistoryTurn("assistant", "red"),
    )
    text = ask("and its size?", history=history)
    assert "2 earlier questions; the first: “how bright is it?”" in text
    assert "the last: “and the colour?”" in text
    assert "No new image in this message, so I use the last one you showed me" in text
    assert "(in your 1st message)" in text and "120×80 px" in text


def test_no_image_at_all_says_how_to_attach_one() -> None:
    assert "Attach one" in ask("hello")


def test_web_search_is_declined() -> None:
    assert "I cannot search the web" in ask("news?", web_search=True)


def test_intents() -> None:
    assert intents("What is odd in this plot? What is missing to read it?") == ["chart", "text"]
    assert intents("Compare these") == ["compare"]
    assert intents("How many lines?") == ["count"]
    assert intents("tell me something") == ["describe"]
    assert intents("Show the measurements as a table") == ["table"]


def test_deterministic() -> None:
    img = photo()
    assert ask("describe", img) == ask("describe", img)
    provider = OfflineProvider(instant=True)
    req = TurnRequest("What is odd?", MODEL_ID, [sales_plot()])
    assert run(provider, req)[0] == run(provider, req)[0] == run(OfflineProvider(0), req)[0]


def test_streaming_is_paced_by_words_per_second() -> None:
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)

    provider = OfflineProvider(words_per_second=40, sleep=fake_sleep)
    evs = events(provider, TurnRequest("describe", MODEL_ID, [solid((9, 9, 9))]))
    deltas = [ev.text for ev in evs if isinstance(ev, TextDelta)]
    assert evs[0] == UploadProgress(1, 1)
    assert len(deltas) > 20 and all(d.strip() for d in deltas[:-1])  # one word at a time
    assert len(pauses) == len(deltas) - 1  # a pause between words, not before the first
    assert all(p == pytest.approx(1 / 40) for p in pauses)
    result = evs[-1]
    assert isinstance(result, TurnResult) and result.model == MODEL_ID
    assert result.usage is not None and result.usage.output_tokens == len("".join(deltas)) // 4
    assert result.usage.input_tokens is not None and result.usage.input_tokens >= 85


@pytest.mark.parametrize(
    "make",
    [lambda s: OfflineProvider(instant=True, sleep=s), lambda s: OfflineProvider(0, sleep=s)],
)
def test_instant_means_no_pauses(make: object) -> None:
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)

    provider = make(fake_sleep)  # type: ignore[operator]
    assert run(provider, TurnRequest("hi", MODEL_ID))[0]
    assert pauses == []


def test_the_default_pace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISIONCHAT_OFFLINE_WPS", raising=False)
    assert OfflineProvider().words_per_second == 30
    monkeypatch.setenv("VISIONCHAT_OFFLINE_WPS", "0")
    assert OfflineProvider().words_per_second == 0
    assert OfflineProvider(12).words_per_second == 12


def test_one_line_ask_about_a_figure_still_being_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    import visionchat

    for key in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VISIONCHAT_OFFLINE_WPS", "0")
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 0])
    reply = visionchat.ask(fig, "What is odd in this plot?")
    assert "chart or diagram" in reply.text and reply.model == MODEL_ID
    assert "no title above the plot" in reply.text
    assert plt.fignum_exists(fig.number)  # still open for more drawing
    ax.set_title("now with a title")
    assert "a title above the plot" in visionchat.ask(fig, "and now?").text  # drawn as it is now
    plt.close(fig)
    with pytest.raises(visionchat.VisionChatError, match="question last"):
        visionchat.ask("What?", fig)
