"""A real JupyterLab on 127.0.0.1 and a real headless Chromium driving it.

JupyterLab is started once per session with a token, a temporary root folder and
the app exposed to the page (``window.jupyterapp``) so tests can run cells through
JupyterLab's own commands instead of imitating key presses.  Chromium is Debian's
(``/usr/bin/chromium``): Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("VISIONCHAT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        return  # in CI a missing browser must fail loudly, not skip
    skip = pytest.mark.skip(reason=f"{CHROMIUM} not found: apt-get install chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url = url
        self.token = token
        self.root = root

    def write_notebook(self, name: str, cells: list[str]) -> str:
        nb = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"c{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": src,
                }
                for i, src in enumerate(cells)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(nb))
        return name


SECRET = "vc-browser-SECRET-0123456789abcdef"


@pytest.fixture(scope="session")
def service() -> Iterator[Any]:
    """An emulated 1min.ai; its key reaches the kernel only through the environment."""
    from visionchat.testing import Emulator

    with Emulator(api_key=SECRET) as emu:
        yield emu


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, service: Any) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab-root")
    home = tmp_path_factory.mktemp("lab-home")
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(key, None)  # the kernel must not reach a real service by accident
    env["ONEMIN_API_KEY"] = SECRET
    env["ONEMIN_BASE_URL"] = service.base_url
    # No "get notified about Jupyter news?" toast over the screenshots.
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = open(home / "lab.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise RuntimeError(
                    "JupyterLab did not start:\n" + (home / "lab.log").read_text()[-3000:]
                ) from None
            time.sleep(0.3)
    try:
        yield Lab(url, token, root)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope on purpose: Playwright's sync API keeps an asyncio loop running
    # in this thread while it is open, which would break later tests that call
    # asyncio.run().  Starting Chromium once per module costs about a second.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


class Notebook:
    """A notebook open in JupyterLab, with helpers that wait on what a person sees."""

    def __init__(self, page: Any, lab: Lab, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name

    def run_all(self) -> None:
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def run_cell(self, index: int) -> None:
        """Run one cell as a person would: click into its editor, press Shift+Enter."""
        editor = self.page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")
        editor.click()
        editor.press("Shift+Enter")

    def wait_idle(self, timeout: float = 60) -> None:
        self.page.wait_for_function(
            """() => {
                const w = window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel;
                return k && k.status === 'idle';
            }""",
            timeout=timeout * 1000,
        )

    def errors(self) -> str:
        """Tracebacks and stderr shown in the notebook (for failure messages)."""
        return "\n".join(
            self.page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
            ).all_inner_texts()
        )

    def wait_for(self, selector: str, timeout: float = 60) -> Any:
        """Wait until ``selector`` is visible; on time-out, say what the cells printed."""
        loc = self.page.locator(selector).first
        try:
            loc.wait_for(timeout=timeout * 1000)
        except Exception as exc:
            self.screenshot(f"failed-{self.name}")
            raise AssertionError(
                f"{selector} did not appear in {self.name}; the notebook shows:\n{self.errors()}"
            ) from exc
        return loc

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def screenshot_of(self, selector: str, name: str) -> Path:
        """Just one element (the README shows the widget this way)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.locator(selector).first.screenshot(path=str(path))
        return path

    def save(self) -> None:
        self.page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_timeout(500)


@pytest.fixture
def open_notebook(lab: Lab, browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def opener(name: str, cells: list[str], *, theme: str = "light") -> Notebook:
        lab.write_notebook(name, cells)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda d: d.dismiss())  # an alert() from a model would land here
        workspace = secrets.token_hex(4)
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab.token}")
        page.wait_for_selector(".jp-Notebook", timeout=90_000)
        # The kernel picker appears when the kernel cannot be chosen from metadata.
        dialog = page.locator(".jp-Dialog button.jp-mod-accept")
        try:
            dialog.first.wait_for(timeout=3000)
            dialog.first.click()
        except Exception:
            pass
        nb = Notebook(page, lab, name)
        nb.wait_idle(90)
        if theme == "dark":
            page.evaluate(
                "window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Dark'})"
            )
            page.wait_for_timeout(800)
        return nb

    yield opener
    for c in contexts:
        c.close()


@pytest.fixture(scope="session", autouse=True)
def _clean_artifacts() -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
