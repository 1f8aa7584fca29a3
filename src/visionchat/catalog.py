"""What is known about vision models without asking a server.

The 1min.ai listing (``GET /models``) is the truth when it answers; this catalog
is the fallback, built from the 1min.ai "Chat with Image" model page (context
sizes and prices per 1,000 tokens as published there), plus the image limit of
each model family as its vendor documents it.  Sending a larger image than the
family keeps only costs upload time and money, so ``prepare_image`` shrinks to
``max_image_edge`` first.
"""

from __future__ import annotations

from collections.abc import Iterable

from .providers.base import ModelInfo

__all__ = ["get_model", "merge", "models", "vision_models"]

# Long edge, in pixels, that each family keeps (larger images are downscaled by
# the service anyway): OpenAI fits 2048x2048, Anthropic about 1568 px, Google
# tiles at 768 px and accepts up to 3072, Mistral's Pixtral 1024 px.
_EDGE = {"openai": 2048, "anthropic": 1568, "google": 3072, "mistral": 1024, "meta": 1120}
# Beyond the long edge: Anthropic also keeps about 1.15 megapixels; OpenAI (high
# detail) fits 2048x2048 and then brings the short side down to 768 px.
_PIXELS = {"anthropic": 1_150_000}
_SHORT = {"openai": 768}

# (id, name, vendor, context tokens, input price, output price) per 1K tokens
_SEED: tuple[tuple[str, str, str, int, float, float], ...] = (
    ("gpt-4o", "GPT-4o", "openai", 128_000, 0.25, 10.0),
    ("gpt-4o-mini", "GPT-4o Mini", "openai", 128_000, 0.15, 0.6),
    ("gpt-4-turbo", "GPT-4 Turbo", "openai", 128_000, 10.0, 30.0),
    ("gpt-5", "GPT-5", "openai", 400_000, 1.25, 10.0),
    ("gpt-5-mini", "GPT-5 Mini", "openai", 400_000, 0.25, 2.0),
    ("gpt-5-chat-latest", "GPT-5 Chat Latest", "openai", 128_000, 1.25, 10.0),
    ("gemini-1.5-pro", "Gemini 1.5 Pro", "google", 2_000_000, 1.25, 5.0),
    ("gemini-1.5-flash", "Gemini 1.5 Flash", "google", 1_000_000, 0.075, 0.3),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", "google", 1_000_000, 0.075, 0.3),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", "google", 2_000_000, 1.25, 5.0),
    ("claude-3-opus-20240229", "Claude 3 Opus", "anthropic", 200_000, 15.0, 75.0),
    ("claude-3-sonnet", "Claude 3 Sonnet", "anthropic", 200_000, 3.0, 15.0),
    ("claude-3-5-sonnet-20240620", "Claude 3.5 Sonnet", "anthropic", 200_000, 3.0, 15.0),
    ("claude-4-opus", "Claude 4 Opus", "anthropic", 1_000_000, 15.0, 75.0),
    ("mistral-large-latest", "Mistral Large 2", "mistral", 128_000, 2.0, 6.0),
    ("pixtral-12b", "Mistral Pixtral 12B", "mistral", 128_000, 0.15, 0.15),
    ("meta/llama-3.1-405b-instruct", "LLaMA 3.1 405B", "meta", 128_000, 5.32, 16.0),
)

_MODELS: dict[str, ModelInfo] = {
    mid: ModelInfo(
        id=mid,
        name=name,
        vendor=vendor,
        vision=True,
        context_tokens=ctx,
        input_price=pin,
        output_price=pout,
        max_image_edge=_EDGE[vendor],
        max_image_pixels=_PIXELS.get(vendor),
        max_image_short_edge=_SHORT.get(vendor),
    )
    for mid, name, vendor, ctx, pin, pout in _SEED
}
_MODELS["offline-demo"] = ModelInfo(
    id="offline-demo",
    name="Offline demo model",
    vendor="visionchat",
    vision=True,
    context_tokens=1_000_000,
    input_price=0.0,
    output_price=0.0,
    max_image_edge=1024,
)


def get_model(model_id: str) -> ModelInfo | None:
    """The catalog entry for ``model_id`` (exact id), or ``None``."""
    return _MODELS.get(model_id)


def models() -> list[ModelInfo]:
    return list(_MODELS.values())


def vision_models() -> list[ModelInfo]:
    return [m for m in _MODELS.values() if m.vision and m.vendor != "visionchat"]


def vendor_of(model_id: str) -> str:
    """Best guess at who makes a model the catalog does not know, from its id."""
    known = _MODELS.get(model_id)
    if known:
        return known.vendor
    low = model_id.lower()
    for prefix, vendor in (
        ("gpt", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
        ("claude", "anthropic"), ("gemini", "google"), ("mistral", "mistral"),
        ("pixtral", "mistral"), ("meta", "meta"), ("llama", "meta"),
    ):  # fmt: skip
        if low.startswith(prefix):
            return vendor
    return ""


def merge(listing: Iterable[ModelInfo]) -> list[ModelInfo]:
    """A backend's listing, completed with the catalog's sizes, prices and limits.

    What the listing says about availability and vision wins; the catalog fills
    in what a listing does not carry.
    """
    out = []
    for m in listing:
        known = _MODELS.get(m.id)
        vendor = m.vendor or (known.vendor if known else vendor_of(m.id))
        out.append(
            ModelInfo(
                id=m.id,
                name=m.name or (known.name if known else m.id),
                vendor=vendor,
                vision=m.vision,
                context_tokens=m.context_tokens or (known.context_tokens if known else None),
                input_price=m.input_price
                if m.input_price is not None
                else (known.input_price if known else None),
                output_price=m.output_price
                if m.output_price is not None
                else (known.output_price if known else None),
                max_image_edge=m.max_image_edge
                or (known.max_image_edge if known else _EDGE.get(vendor)),
                max_image_pixels=m.max_image_pixels
                or (known.max_image_pixels if known else _PIXELS.get(vendor)),
                max_image_short_edge=m.max_image_short_edge
                or (known.max_image_short_edge if known else _SHORT.get(vendor)),
                available=m.available,
            )
        )
    return out
