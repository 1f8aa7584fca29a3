"""The transcript as Markdown or as one self-contained HTML page.

Model output is untrusted: a model can emit HTML, and an exported page is
opened in a browser.  So text is rendered by markdown-it-py with raw HTML
disabled and the result sanitized again by nh3 (no scripts, no event
handlers, no ``javascript:`` links).  Images travel inside the file as data
URLs, so the export needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import nh3
from markdown_it import MarkdownIt

if TYPE_CHECKING:
    from .conversation import Message
    from .images import PreparedImage

__all__ = ["render_markdown", "to_html", "to_markdown"]

ImageMode = Literal["thumbnail", "full", "none"]

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def render_markdown(text: str) -> str:
    """Markdown to safe HTML (raw HTML in the input is shown as text, then sanitized)."""
    return str(nh3.clean(_md.render(text)))


def _image_url(img: PreparedImage, mode: ImageMode) -> str:
    if mode == "thumbnail":
        data = base64.b64encode(img.thumbnail).decode("ascii")
        return f"data:{img.thumbnail_mime};base64,{data}"
    return img.to_data_url()


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))


def _speaker(msg: Message) -> str:
    if msg.role == "user":
        return "You"
    return msg.model or "Assistant"


def _status(msg: Message) -> list[str]:
    notes = []
    if msg.interrupted:
        notes.append("interrupted: the answer is partial")
    if msg.error:
        notes.append(f"failed: {msg.error}")
    notes.extend(msg.notices)
    return notes


def to_markdown(messages: Sequence[Message], *, title: str, images: ImageMode = "thumbnail") -> str:
    """Markdown with one section per message; images inline as data URLs."""
    out = [f"# {title}", ""]
    for msg in messages:
        out += [f"### {_speaker(msg)} · {_when(msg.created)}", ""]
        if msg.text:
            out += [msg.text, ""]
        if images != "none":
            for img in msg.images:
                alt = f"{img.source} ({img.width}×{img.height})".replace("]", ")")
                out += [f"![{alt}]({_image_url(img, images)})", ""]
        for note in _status(msg):
            out += [f"*— {note}*", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2328; background: #fff; }
.msg { border-radius: 8px; padding: .6rem 1rem; margin: 1rem 0; }
.user { background: #eef4ff; }
.assistant { background: #f6f8fa; }
.who { font-weight: 600; font-size: .85rem; color: #57606a; }
.who time { font-weight: 400; margin-left: .5rem; }
.images img { max-width: 100%; max-height: 24rem; margin: .3rem .3rem 0 0; border-radius: 4px; }
.note { font-style: italic; color: #9a6700; }
pre { background: #eaeef2; padding: .6rem; overflow-x: auto; border-radius: 6px; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: .2rem .5rem; }
"""


def to_html(messages: Sequence[Message], *, title: str, images: ImageMode = "full") -> str:
    """A complete HTML document; every image inline, every text sanitized."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for msg in messages:
        parts.append(f'<section class="msg {msg.role}">')
        parts.append(
            f'<div class="who">{html.escape(_speaker(msg))}'
            f"<time>{html.escape(_when(msg.created))}</time></div>"
        )
        if msg.text:
            parts.append(f'<div class="text">{render_markdown(msg.text)}</div>')
        if msg.images and images != "none":
            parts.append('<div class="images">')
            for img in msg.images:
                alt = html.escape(f"{img.source} ({img.width}×{img.height})", quote=True)
                parts.append(f'<img src="{_image_url(img, images)}" alt="{alt}">')
            parts.append("</div>")
        for note in _status(msg):
            parts.append(f'<p class="note">— {html.escape(note)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
