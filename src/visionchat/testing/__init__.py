"""A local emulator of the 1min.ai API (and of an OpenAI-compatible API).

The real service cannot be reached from a test, a CI machine or a classroom
without Wi-Fi; this emulator is a real HTTP server on 127.0.0.1 that behaves
as the service does, quirks and faults included, and answers from the images
it actually receives (their size and colours), so a test can tell an image
arrived.  Use it to test your own notebooks and code offline:

    from visionchat import Conversation
    from visionchat.testing import Emulator

    with Emulator(api_key="test-key") as emu:
        conv = Conversation(provider="1min", api_key="test-key", base_url=emu.base_url)
        reply = conv.ask("What is in this picture?", "cat.png")
        assert "image" in reply.text
        emu.add_fault("rate_limit", retry_after=1)      # the next chat request gets a 429
        emu.add_fault("cut", after_chunks=3)            # a stream that breaks off
        print(emu.requests[-1].json)                    # what the client sent

The OpenAI-compatible API lives under ``emu.base_url + "/v1"`` (bearer key).
From a shell: ``python -m visionchat.testing --port 8765``.  With pytest, the
``emulator`` fixture gives a fresh emulator per test.

Faults (``add_fault(kind, path=None, times=1, **params)``): ``status``
(``status=``, ``body=``, ``headers=``), ``rate_limit`` (``retry_after=`` seconds,
an HTTP date string, ``"date"`` or ``None``), ``html_error`` (``status=``),
``reset`` (connection reset before any byte), ``cut`` (``after_chunks=``),
``error_event`` (``after_chunks=``, ``message=``), ``stall`` (``seconds=``,
``after_chunks=``), ``slow`` (``tokens_per_second=``), ``duplicate_final``.
"""

from ._server import Emulator, RecordedRequest

__all__ = ["Emulator", "RecordedRequest"]
