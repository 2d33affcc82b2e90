"""The shared pages: tidied notebooks, the results dashboard, and the static site in a real browser.

The browser test builds the site from the committed ``results/`` (executing nothing) and
opens every page in headless Chromium (Debian's ``chromium`` package) over the DevTools
protocol, with the network switched off, and checks what a reader would see from the DOM.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from imgmine_jax import plots, run, site

INSTALL_HINT = "install Chromium to run it: apt-get install -y chromium (Debian/Ubuntu)"


# --------------------------------------------------------------------------- tidy, without a browser

def _executed_notebook() -> nbformat.NotebookNode:
    png = base64.b64encode(b"\x89PNG fake").decode()
    gif = base64.b64encode(b"GIF89a fake").decode()
    figure = {"image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>"}
    return new_notebook(cells=[
        new_markdown_cell("# 99 · A demo page\n\nIntro."),
        new_code_cell('profile = "full"\nepochs = 3', metadata={"tags": ["parameters"]}),
        new_code_cell('# Parameters\nprofile = "quick"\nepochs = 1\n', metadata={"tags": ["injected-parameters"]}),
        new_code_cell("report = Report('99_demo', profile=profile, seed=0)", outputs=[
            new_output("stream", name="stderr", text=(
                "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                "I0000 00:00:1796288393.949675   12640 port.cc:153] oneDNN custom operations are on.\n")),
            new_output("stream", name="stderr", text="a real warning\n")]),
        new_code_cell("report.figure(fig, 'x')", outputs=[
            new_output("display_data", data=figure),
            new_output("execute_result", data=figure, execution_count=1)]),
        new_code_cell("fig", outputs=[new_output("execute_result", data=figure, execution_count=2)]),
        new_code_cell("display(Image(gif))", outputs=[
            new_output("display_data", data={"image/gif": gif, "text/plain": "<IPython.core.display.Image object>"})]),
    ])


def test_tidy_shows_each_figure_once_the_gif_as_html_and_the_run_parameters():
    doc = {"profile": "quick", "seed": 0, "dataset": "mnist", "parameters": {"epochs": 1},
           "wall_seconds": 12.3, "finished": "2026-12-03T09:17:17+00:00",
           "device": {"platform": "cpu", "count": 1, "processor": "Some CPU", "cpu_count": 2},
           "versions": {"jax": "0.10.2"}, "metrics": {}}
    nb = site.tidy_notebook(_executed_notebook(), doc)
    again = site.tidy_notebook(nbformat.from_dict(json.loads(json.dumps(nb))), doc)
    assert json.dumps(again, sort_keys=True) == json.dumps(nb, sort_keys=True), "tidying must be idempotent"
    cells = nb.cells
    assert nb.metadata["title"] == "99 · A demo page"
    info = cells[1]
    assert site.RUN_INFO_TAG in info.metadata["tags"] and "`epochs = 1` (set for this run)" in info.source
    assert "quick" in info.source and "12 s" in info.source and "Some CPU" in info.source
    injected = next(c for c in cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "remove-cell" in injected.metadata["tags"]
    setup = next(c for c in cells if "Report(" in c.source)
    assert [o["text"] for o in setup.outputs] == ["a real warning\n"]
    assert "code-open" not in setup.metadata["tags"] and "hide-input" in setup.metadata["tags"]
    shown = next(c for c in cells if c.source.startswith("report.figure"))
    assert [o["output_type"] for o in shown.outputs] == ["display_data"], "the figure's Out[n] repeat stays"
    alone = next(c for c in cells if c.source == "fig")
    assert len(alone.outputs) == 1, "a figure shown only as the cell's value must be kept"
    gif = next(c for c in cells if c.source.startswith("display(Image")).outputs[0]["data"]
    assert gif["text/html"].startswith('<img src="data:image/gif;base64,')


def test_gif_bundle_carries_an_img_tag_and_refuses_non_gif_bytes():
    gif = plots.animated_grid([__import__("numpy").zeros((4, 8, 8), "uint8")] * 2, ["a", "b"], ncols=2)
    bundle = plots.gif_bundle(gif, alt='the "frames"')
    assert base64.b64decode(bundle["image/gif"]) == gif
    html = bundle["text/html"]
    assert html.startswith('<img src="data:image/gif;base64,') and "&quot;frames&quot;" in html
    with pytest.raises(ValueError, match="GIF"):
        plots.gif_bundle(b"\x89PNG", alt="x")


def test_headline_status_follows_the_targets_and_the_profile():
    h = site.Headline("01", "acc", "acc", "{:.2%}", "≥ 99%", (("acc", ">=", 0.99), ("secs", "<=", 600)))
    assert h.status({"profile": "full", "metrics": {"acc": 0.995, "secs": 300}}) == "met"
    assert h.status({"profile": "full", "metrics": {"acc": 0.995, "secs": 700}}) == "missed"
    assert h.status({"profile": "quick", "metrics": {"acc": 0.5, "secs": 1}}) == "quick profile"
    assert h.status(None) == "not run"
    names = {h.metric for h in site.HEADLINES}
    for stem, doc in site.load_runs(run.RESULTS_DIR).items():
        # every headline of a published notebook names a metric that notebook records
        wanted = {h.metric for h in site.HEADLINES if stem.startswith(h.notebook + "_")}
        assert wanted <= set(doc["metrics"]), f"{stem}: {wanted - set(doc['metrics'])} not in metrics.json"
    assert names


def test_results_readme_is_the_generated_dashboard(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(run.RESULTS_DIR, results, ignore=shutil.ignore_patterns("*.ipynb", "*.html", "*.gif"))
    text = site.write_index(results).read_text()
    assert text == (run.RESULTS_DIR / "README.md").read_text(), \
        "results/README.md differs from what the generator writes: regenerate it (python -m imgmine_jax.run --rerender)"
    table = text.split("## Headline results")[1].split("## Runs")[0]
    assert table.count("| met |") + table.count("| **missed** |") >= len([h for h in site.HEADLINES if h.conditions])
    for link in re.findall(r"\]\(([^)#]+)\)", text) + re.findall(r'src="([^"]+)"', text):
        assert (run.RESULTS_DIR / link).exists(), f"results/README.md links to missing {link}"
    assert 'width="260"' not in text


# --------------------------------------------------------------------------- the site in a browser

def _chromium() -> str | None:
    for name in (os.environ.get("IMGMINE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium over the DevTools protocol (flattened sessions on the browser socket)."""

    def __init__(self, binary: str, profile_dir: Path):
        import websocket  # websocket-client

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--mute-audio",
             # no network: every host resolves to nothing and any proxy lookup goes nowhere
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
             f"--user-data-dir={profile_dir}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Network.emulateNetworkConditions", session=True, offline=True, latency=0,
                  downloadThroughput=-1, uploadThroughput=-1)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=900,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        # MathJax typesets after load; wait for it where a page has it
        self.evaluate("(async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
                      " { await MathJax.startup.promise; } return true; })()")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True, timeout=60000)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, max_height: int = 8000) -> None:
        """The whole page (up to ``max_height`` pixels): the viewport is made as tall as the page."""
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=height,
                  deviceScaleFactor=1, mobile=False)
        try:
            shot = self.call("Page.captureScreenshot", session=True, format="png")
        finally:
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=900,
                      deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# What a page shows: title, images, links, leftover LaTeX in the prose, math rendered.
PAGE_FACTS = r"""
(() => {
  const prose = document.querySelector("main") || document.body;
  const copy = prose.cloneNode(true);
  copy.querySelectorAll("pre, code, script, style, mjx-container, .cell_input, .highlight").forEach(e => e.remove());
  return {
    title: document.title,
    h1: (document.querySelector("main h1") || {}).textContent || "",
    text: copy.textContent,
    outputs: Array.from(document.querySelectorAll(".cell_output")).map(e => e.textContent).join("\n"),
    math: document.querySelectorAll("mjx-container").length,
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                                                  output: !!i.closest(".cell_output"), alt: i.alt})),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    nav: Array.from(document.querySelectorAll("nav.bd-links a[href], .bd-sidebar-primary a.reference.internal"))
              .map(a => a.href),
  };
})()
"""

RAW_LATEX = re.compile(r"\$\$|\\\(|\\\[|\\begin\{|\$[^$\n]{0,80}\\[a-zA-Z]+")


def _local(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def _content_hash(url: str) -> str:
    if url.startswith("data:"):
        return hashlib.sha256(url.split(",", 1)[1].encode()).hexdigest()
    return hashlib.sha256(_local(url).read_bytes()).hexdigest()


def test_site_renders_offline_in_chromium(tmp_path):
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser test, but no Chromium was found; {INSTALL_HINT}")
        pytest.skip(f"no Chromium on this machine: the browser test did not run; {INSTALL_HINT}")
    index = site.build_site(run.RESULTS_DIR, tmp_path / "site")
    out = index.parent
    runs = site.load_runs(run.RESULTS_DIR)
    pages = sorted(out.glob("*.html"))
    assert {f"{stem}.html" for stem in runs} <= {p.name for p in pages}
    for text_file in [*out.rglob("*.html"), *out.rglob("*.js")]:
        text = text_file.read_text(errors="replace")
        assert str(run.REPO_ROOT) not in text and str(tmp_path) not in text, f"machine path in {text_file}"
        if text_file.suffix == ".html":   # (MathJax's own bundle names a CDN it never loads here)
            assert not re.search(r'src="(https?:)?//|<link[^>]*href="(https?:)?//', text), \
                f"{text_file.name} loads something from the web"

    browser = Browser(binary, tmp_path / "chromium-profile")
    try:
        titles = {}
        for page in pages:
            if page.name == "genindex.html":
                continue
            browser.open(page.as_uri())
            facts = browser.evaluate(PAGE_FACTS)
            name = page.name
            if name == "index.html":
                browser.screenshot(tmp_path / "landing.png")
            offsite = [u for u in browser.requests() if not u.startswith(("file:", "data:", "blob:", "about:"))]
            assert not offsite, f"{name} asked the network for {offsite}"
            assert facts["title"].strip() and not facts["title"].startswith("Notebook"), f"{name}: no title"
            titles[name] = facts["title"]
            broken = [i["src"][:80] for i in facts["images"] if not i["ok"]]
            assert not broken, f"{name}: broken images {broken}"
            raw = RAW_LATEX.search(facts["text"])
            text = facts["text"]
            assert raw is None, f"{name}: raw LaTeX in the text: {text[max(0, raw.start() - 60):raw.end() + 60]!r}"
            table = re.search(r"\|\s*:?(-{3,}|\u2014+|\u2013+):?\s*\|", facts["text"])
            assert table is None, f"{name}: a Markdown table left as text: {text[table.start() - 80:table.end()]!r}"
            assert "IPython.core.display" not in facts["text"] + facts["outputs"], \
                f"{name}: an object repr instead of an image"
            noise = re.search(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard", facts["outputs"])
            assert noise is None, f"{name}: library log lines in the outputs"
            outputs = [i["src"] for i in facts["images"] if i["output"]]
            hashes = [_content_hash(u) for u in outputs]
            assert len(hashes) == len(set(hashes)), f"{name}: a figure is shown more than once"
            for link in facts["links"]:
                if link.startswith("file:"):
                    assert _local(link).exists(), f"{name}: link to a missing page {link}"
            if name == "index.html" or name.split(".")[0] in runs:
                nav = {_local(u).name for u in facts["nav"]}
                assert {f"{stem}.html" for stem in runs} <= nav, f"{name}: navigation lacks {set(runs)} ({nav})"
            stem = page.stem
            if stem in runs:
                assert facts["h1"].strip("#¶ \n") and facts["h1"].strip("#¶ \n")[:20] in facts["title"]
                assert "This run" in facts["text"] and runs[stem]["profile"] in facts["text"]
                figures = list((run.RESULTS_DIR / stem / "figures").glob("*.png"))
                assert len(outputs) >= min(1, len(figures)), f"{name}: no figure shown"
                if (run.RESULTS_DIR / stem / "progression.gif").exists():
                    gifs = [i for i in facts["images"] if i["src"].startswith("data:image/gif") and i["ok"]]
                    assert gifs, f"{name}: the progression GIF is not shown as an image"
                if "$" in (run.RESULTS_DIR / stem / f"{stem}.ipynb").read_text() and stem.startswith("00"):
                    assert facts["math"] > 0, f"{name}: no formula was typeset"
        assert len(set(titles.values())) == len(titles), f"pages share a title: {titles}"
        # Search works from file:// (the index is a script the page loads, no server needed).
        browser.open((out / "search.html").as_uri() + "?q=convolution")
        found, deadline = [], time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            found = browser.evaluate("Array.from(document.querySelectorAll('#search-results li a'))"
                                     ".map(a => a.textContent)")
            time.sleep(0.2)
        assert any(t.startswith("00") for t in found), f"searching 'convolution' found {found}"
        # The standalone page of each notebook (results/<nb>/<nb>.html), the file one attaches.
        for stem in runs:
            page = run.RESULTS_DIR / stem / f"{stem}.html"
            browser.open(page.as_uri())
            facts = browser.evaluate(PAGE_FACTS.replace('document.querySelector("main") || ', "")
                                     .replace(".cell_output", ".jp-OutputArea-output"))
            offsite = [u[:80] for u in browser.requests() if not u.startswith(("file:", "data:", "blob:", "about:"))]
            assert not offsite, f"{page.name} asked the network for {offsite}"
            assert facts["title"].strip() and facts["title"] != "Notebook", f"{page.name}: no title"
            assert all(i["ok"] for i in facts["images"]), f"{page.name}: a broken image"
            assert RAW_LATEX.search(facts["text"]) is None, f"{page.name}: raw LaTeX in the text"
            assert "IPython.core.display" not in facts["outputs"] and "oneDNN" not in facts["outputs"]
            hashes = [_content_hash(i["src"]) for i in facts["images"]]
            assert len(hashes) == len(set(hashes)), f"{page.name}: a figure is shown more than once"
            if (run.RESULTS_DIR / stem / "progression.gif").exists():
                assert any(i["src"].startswith("data:image/gif") and i["ok"] for i in facts["images"])
            if stem.startswith("00"):
                assert facts["math"] > 0, f"{page.name}: no formula was typeset offline"
    finally:
        browser.close()
    assert (tmp_path / "landing.png").stat().st_size > 10_000


def test_native_startup_notices_are_dropped_and_other_stderr_kept(tmp_path):
    # A child process writes to descriptor 2 as TensorFlow's C++ code does, inside the filter.
    script = (
        "import os, sys\n"
        "from imgmine_jax.logs import quiet_native_startup\n"
        "with quiet_native_startup():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written "
        "to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796288393.949675   12640 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "    os.write(2, b'a real problem\\n')\n"
        "print('done')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(run.REPO_ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert proc.stderr == "a real problem\n"


def test_site_and_rerender_execute_nothing_and_take_no_notebooks():
    with pytest.raises(SystemExit, match="execute nothing"):
        run.main(["--site", "01"])
    with pytest.raises(SystemExit, match="execute nothing"):
        run.main(["--rerender", "-p", "epochs=1"])
