"""The web explorer's graph of vit_b_16 in a real browser: how long each view takes to
arrive (the daemon lays the graph out; the page draws what comes back) and the frame
rate while panning.

    python tests/bench/bench_web.py OUT.md [--daemon target/release/layerlensd]

Headless Chromium (Debian's) at 1280x800, driven by Selenium, against a release daemon
on loopback with `--cache-bytes 0` (every view is laid out afresh, none comes from the
result cache). `torchvision.models.vit_b_16(weights=None)` is exported with
torch.export and stored. Times run from the click to the moment the page has replaced
the drawing (a MutationObserver on the SVG, inside the page); frames per second come
from the page's own `requestAnimationFrame` count during about two seconds of Selenium
drag moves, which the browser caps at 60.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import torch
import torchvision

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import layerlens  # noqa: E402


def start_daemon(binary, store):
    """layerlensd with the web listener, both on free loopback ports: (process, gRPC address, page URL)."""
    process = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--store", str(store), "--device", "cpu",
         "--cache-bytes", "0"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, LAYERLENS_LOG="warn", OMP_NUM_THREADS="2"),
    )
    address = url = None
    for line in process.stdout:
        if "web explorer on " in line:
            url = line.split("web explorer on ", 1)[1].strip()
        elif "listening on " in line:
            address = line.split("listening on ", 1)[1].split()[0]
        if address and url:
            return process, address, url
    raise SystemExit(f"layerlensd exited with status {process.wait()} before listening")


# Clicks the element and answers the milliseconds until the SVG's drawing is replaced.
TIMED_CLICK = """
const [selector, done] = [arguments[0], arguments[arguments.length - 1]];
const svg = document.getElementById("graph-svg");
const start = performance.now();
const observer = new MutationObserver(() => { observer.disconnect(); done(performance.now() - start); });
observer.observe(svg, { childList: true });
document.querySelector(selector).dispatchEvent(new MouseEvent("click", { bubbles: true }));
"""


def pan_fps(driver):
    from selenium.webdriver.common.action_chains import ActionChains

    svg = driver.find_element("id", "graph-svg")
    chain = ActionChains(driver).move_to_element(svg).click_and_hold()
    for _ in range(60):
        chain.move_by_offset(3, 2).pause(0.03)
    chain.release().perform()
    return float(driver.find_element("id", "graph-fps").get_attribute("data-fps"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--daemon", default=str(REPO / "target" / "release" / "layerlensd"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.support.ui import Select

    torch.manual_seed(0)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-web-"))
    started = time.perf_counter()
    model = torchvision.models.vit_b_16(weights=None).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 224, 224),)), str(work / "vit_b_16.pt2"))
    export_s = time.perf_counter() - started
    process, address, url = start_daemon(args.daemon, work / "store")
    client = layerlens.connect(f"http://{address}", timeout=300)
    client.add_model(work / "vit_b_16.pt2", name="vit_b_16")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,800", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(300)
    rows = []
    try:
        driver.get(url)
        while driver.execute_script("return document.body.dataset.ready") != "true":
            time.sleep(0.05)
        driver.find_element("id", "tab-graph").click()
        Select(driver.find_element("id", "graph-model")).select_by_visible_text("vit_b_16")
        svg = driver.find_element("id", "graph-svg")

        def view(name, selector):
            milliseconds = driver.execute_async_script(TIMED_CLICK, selector)
            boxes = int(svg.get_attribute("data-boxes"))
            rows.append((name, boxes, milliseconds, pan_fps(driver)))
            print(rows[-1], flush=True)

        view("top-level modules (first load: Graph, Summary, Parameters, layout)", "#graph-load")
        view("top-level modules again (model resident)", "#graph-load")
        view("`encoder` open", "#graph-svg .node.module[data-path='encoder']")
        view("`encoder.layers` open: 12 blocks folded into one box ×12", "#graph-svg .node.module[data-path='encoder.layers']")
        view("the 12 blocks unfolded", "#graph-svg .node.repeat[data-path='encoder.layers.encoder_layer_0']")
        view("every module open (Expand all)", "#graph-expand-all")
        browser_version = driver.capabilities.get("browserVersion", "?")
    finally:
        driver.quit()
        client.close()
        process.terminate()
        process.wait()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Headless Chromium {browser_version}, 1280×800, release daemon with `--cache-bytes 0`; vit_b_16 exported in {export_s:.1f} s.",
        "",
        "| view | boxes drawn | click to drawing replaced | fps while panning |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {boxes} | {milliseconds / 1000:.2f} s | {fps:.1f} |" for name, boxes, milliseconds, fps in rows]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
