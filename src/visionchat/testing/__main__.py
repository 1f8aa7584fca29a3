"""``python -m visionchat.testing``: run the emulator until Ctrl+C."""

from __future__ import annotations

import argparse
import threading

from . import Emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m visionchat.testing",
        description="A local emulator of the 1min.ai API and an OpenAI-compatible API.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--api-key", default="test-key", help="the key clients must send")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between chunks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    emu = Emulator(args.api_key, port=args.port, chunk_delay=args.chunk_delay, verbose=args.verbose)
    with emu:
        print(f"visionchat emulator on {emu.base_url}  (API key: {args.api_key})")
        print("1min.ai, from Python:")
        print(
            f"  Conversation(provider='1min', api_key='{args.api_key}', base_url='{emu.base_url}')"
        )
        print("OpenAI-compatible, from a shell:")
        print(f"  export OPENAI_BASE_URL={emu.base_url}/v1 OPENAI_API_KEY={args.api_key}")
        print("Ctrl+C stops it.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nstopped")


if __name__ == "__main__":
    main()
