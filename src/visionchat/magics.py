"""``%%vision`` and ``%vision``: ask about images from a cell.

    %load_ext visionchat

    %%vision fig photo
    What is odd in this plot, and does the photo show the same trend?

The cell body is the prompt; the arguments name images in the notebook's
namespace (or paths, URLs, ``gcf`` for the current matplotlib figure).  The
answer streams into the cell and settles as ordinary Markdown output, so a
saved notebook shows it on GitHub or nbviewer with no kernel.  Follow-up cells
continue the same conversation until ``--new``; ``-c NAME`` keeps several.
Errors print one short line, not a traceback; a partial answer is kept.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from .batch import BatchInterrupted, batch, collect_inputs
from .conversation import Conversation, Reply
from .errors import VisionChatError

__all__ = ["VisionMagics", "conversations", "load_ipython_extension"]

#: the magic's conversations by name ("default" unless ``-c NAME``)
conversations: dict[str, Conversation] = {}

_USAGE = """\
%%vision [-m MODEL] [--new] [-c NAME] [--web] [--provider P] [IMAGE ...]
<prompt: the cell body>

%%vision --each [--schema S] [--cache FILE] [--max-cost X] [-m MODEL] IMAGES ...
<prompt: asked of each image on its own; the answers come back as a table>

%vision [-m MODEL] [--new] [-c NAME] [--web] [-i IMAGE ...] PROMPT
%vision -c NAME          (no prompt) returns that conversation object
%vision --list           lists the conversations and their turns

IMAGE is a name in the notebook (a PIL image, NumPy array, matplotlib figure or
axes, a path string), a file path or URL, or `gcf` for the current matplotlib
figure. With no IMAGE and an open matplotlib figure, that figure is used.
{name} in the prompt is replaced by the value of the variable `name`.
With --each, IMAGES are folders, glob patterns (plots/*.png) or names of lists,
dicts or pandas Series of images; --schema names a dict, dataclass or TypedDict
in the notebook (or is inline JSON such as '{"labelled": "bool"}').
"""


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # no SystemExit inside a kernel
        raise _ArgError(f"{message}\n\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _ArgError(message or "")


def _parser(cell: bool) -> _Parser:
    p = _Parser(
        prog="%%vision" if cell else "%vision",
        description="Ask a vision model about images in the notebook.",
        usage=_USAGE.replace("%", "%%"),
        add_help=False,
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    p.add_argument("-m", "--model", help="model id (default: the conversation's model)")
    p.add_argument("-c", "--conversation", default="default", metavar="NAME",
                   help="which conversation to continue (default: 'default')")  # fmt: skip
    p.add_argument("--new", action="store_true", help="start the conversation afresh")
    p.add_argument("--web", action="store_true", help="let the model search the web (1min.ai)")
    p.add_argument("--provider", help="'1min', 'openai' or 'offline' for a new conversation")
    p.add_argument("--list", action="store_true", help="list the conversations")
    if cell:
        p.add_argument("images", nargs="*", metavar="IMAGE", help="images to ask about")
        p.add_argument(
            "--each",
            action="store_true",
            help="ask about each image on its own; the answers as a table",
        )
        p.add_argument("--schema", help="with --each: fields to answer in (a name or JSON)")
        p.add_argument("--cache", help="with --each: an SQLite file keeping the answers")
        p.add_argument("--max-cost", type=float, help="with --each: refuse above this estimate")
    else:
        p.add_argument("-i", "--image", action="append", default=[], dest="images",
                       metavar="IMAGE", help="an image to ask about (repeatable)")  # fmt: skip
        p.add_argument("prompt", nargs=argparse.REMAINDER, help="the question")
    return p


def _say(message: str) -> None:
    print(f"visionchat: {message}", file=sys.stderr)


@magics_class
class VisionMagics(Magics):
    @line_cell_magic
    def vision(self, line: str, cell: str | None = None) -> Any:
        """Ask a vision model about images; see ``%vision --help``."""
        parser = _parser(cell is not None)
        try:
            args = parser.parse_args(shlex.split(line))
        except (_ArgError, ValueError) as exc:
            _say(str(exc).strip())
            return None
        if args.help:
            print(parser.format_help())
            return None
        if args.list:
            for name, conv in conversations.items():
                print(f"{name}: {conv!r}")
            return None
        prompt = cell if cell is not None else " ".join(args.prompt)
        if getattr(args, "each", False):
            return self._batch(args, prompt)
        if not prompt.strip() and not args.images:
            if cell is None:  # `%vision -c NAME`: hand the conversation to the user
                return self._conversation(args)
            _say("the cell is empty: write your question in the cell body.")
            return None
        try:
            conv = self._conversation(args)
            images = [self._image(token) for token in args.images]
            if not images and (fig := _open_figure()) is not None:
                images = [fig]
                print("(asking about the current matplotlib figure)")
            reply: Reply = conv.ask(
                self._interpolate(prompt.strip()),
                *images,
                model=args.model,
                web_search=args.web,
                show=True,
            )
        except VisionChatError as exc:
            _say(str(exc))
            return None
        except KeyboardInterrupt:
            _say("stopped; the partial answer is kept in the conversation.")
            return None
        del reply  # already shown as Markdown; returning it would show it twice
        return None

    def _batch(self, args: argparse.Namespace, prompt: str) -> Any:
        """``%%vision --each``: the table is the cell's result, so it shows as output."""
        if not args.images:
            _say("--each needs images: a folder, a glob pattern such as plots/*.png, or a list.")
            return None
        if not prompt.strip():
            _say("the cell is empty: write the question to ask of each image in the cell body.")
            return None
        try:
            named: dict[Any, object] = {}
            for token in args.images:
                named.update(self._batch_inputs(token))
            return batch(
                named,
                self._interpolate(prompt.strip()),
                schema=self._schema(args.schema) if args.schema else None,
                model=args.model,
                provider=args.provider,
                cache=args.cache,
                max_cost=args.max_cost,
                web_search=args.web,
            )
        except VisionChatError as exc:
            _say(str(exc))
        except BatchInterrupted as exc:
            _say(str(exc).removeprefix("visionchat: "))
            return exc.result
        return None

    def _batch_inputs(self, token: str) -> list[tuple[Any, object]]:
        ns = self.shell.user_ns if self.shell is not None else {}
        if token in ns:
            value = ns[token]
            if isinstance(value, str) or not _is_collection(value):
                return [(token, value)]
            return collect_inputs(value)
        return collect_inputs(token)  # a folder, a glob pattern or a file

    def _schema(self, text: str) -> Any:
        ns = self.shell.user_ns if self.shell is not None else {}
        if text in ns:
            return ns[text]
        try:
            return json.loads(text)
        except ValueError:
            raise VisionChatError(
                f"--schema {text!r} is neither a name in the notebook nor JSON; define it "
                "(schema = {'labelled': bool}) and pass --schema schema."
            ) from None

    def _conversation(self, args: argparse.Namespace) -> Conversation:
        name = args.conversation
        conv = conversations.get(name)
        if conv is None or args.new:
            kw: dict[str, Any] = {}
            if args.model:
                kw["model"] = args.model
            if args.provider:
                kw["provider"] = args.provider
            conv = Conversation(**kw)
            conversations[name] = conv
        return conv

    def _image(self, token: str) -> object:
        ns = self.shell.user_ns if self.shell is not None else {}
        if token == "gcf":
            fig = _open_figure()
            if fig is None:
                raise VisionChatError(
                    "`gcf` asks for the current matplotlib figure, but none is open. Draw "
                    "one first (fig, ax = plt.subplots() ...), or name the figure variable."
                )
            return fig
        if token in ns:
            return ns[token]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token) and "." not in token:
            raise VisionChatError(
                f"`{token}` is not defined in this notebook. Run the cell that creates it, "
                "or give a file path or URL."
            )
        if re.fullmatch(r"[A-Za-z_]\w*(\.\w+|\[-?\d+\])+", token):
            try:  # attribute or index access only, e.g. fig.axes[0] or images[2]
                return eval(token, ns)
            except Exception:
                pass
        return token  # a path or a URL: prepare_image says if it is not an image

    def _interpolate(self, prompt: str) -> str:
        ns = self.shell.user_ns if self.shell is not None else {}

        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            return str(ns[name]) if name in ns else m.group(0)

        return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", value, prompt)


def _is_collection(value: object) -> bool:
    """A list, dict, Series ... of images, as opposed to one image (arrays are one image)."""
    if type(value).__module__.startswith(("numpy", "PIL", "matplotlib")):
        return False
    return isinstance(value, list | tuple | dict) or type(value).__name__ == "Series"


def _open_figure() -> Any:
    """The current matplotlib figure, if pyplot is in use and one is open."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or not plt.get_fignums():
        return None
    return plt.gcf()


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(VisionMagics)
