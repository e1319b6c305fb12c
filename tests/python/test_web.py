"""The web explorer in a real browser: Debian's chromium (installed with apt-get when
missing) driven by Selenium against a real daemon serving `--web-listen` on loopback.

The page lists the models, lays out resnet18's graph and expands `layer1` (a node card's
numbers are checked against the Summary RPC), runs saliency from the playground on a
digit and its downloaded .npy equals the CLI's, cancels a long occlusion (the daemon's
in-flight count falls back to 0), and is refused without a token on a daemon that has
a tokens file. A screenshot of each view goes to target/web-screenshots/. The browser's
console must stay free of errors.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import layerlens
from conftest import REPO_ROOT, running_daemon

CLI = REPO_ROOT / "target" / "debug" / "layerlens"
SCREENSHOTS = REPO_ROOT / "target" / "web-screenshots"
SELENIUM = "selenium==4.51.0"
WAIT_S = 60
TOKEN = "web-token-7f3c2a19-explorer"


def ensure_browser():
    """chromium and chromedriver from Debian, and Selenium in this Python: installed when missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.fail("chromium and chromium-driver are missing: apt-get install chromium chromium-driver")
        environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, timeout=600, env=environment, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], check=True, timeout=900, env=environment,
                       stdout=subprocess.DEVNULL)
    try:
        import selenium  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", SELENIUM], check=True, timeout=600)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_browser()
    from selenium import webdriver

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,800", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(WAIT_S)
    driver.downloads = downloads
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def web_url(running):
    for line in running.stdout_lines:
        if "web explorer on " in line:
            return line.split("web explorer on ", 1)[1].strip()
    pytest.fail(f"no web explorer line in the daemon's output: {running.stdout_lines}")


def js_exponential(value, digits=3):
    """JavaScript's Number.toExponential(digits): 1.234e-3, not Python's 1.234e-03."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def wait_for(condition, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def open_page(driver, url):
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === 'true' || !document.getElementById('error').hidden"),
             "the page to load")


def no_console_errors(driver):
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, f"the browser's console shows errors: {severe}"


def shoot(driver, name):
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def web(tmp_path_factory, fixtures_dir):
    with running_daemon(tmp_path_factory, ["--web-listen", "127.0.0.1:0", "--cache-bytes", "0"]) as running:
        client = layerlens.connect(f"http://{running.address}", timeout=120)
        client.add_model(fixtures_dir / "digits_cnn.pt", np.zeros((1, 1, 8, 8), dtype=np.float32), name="digits")
        yield running, client, web_url(running)
        client.close()


@pytest.fixture(scope="module")
def resnet18(web, tmp_path_factory):
    import torch
    import torchvision

    _, client, _ = web
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("resnet") / "resnet18.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 224, 224),)), str(path))
    return client.add_model(path, name="resnet18")


def test_models_graph_and_status(browser, web, resnet18):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, client, url = web
    open_page(browser, url)
    table = browser.find_element(By.ID, "models-table").text
    assert "digits" in table and "resnet18" in table and "exported" in table and "torchscript" in table, table
    shoot(browser, "models")

    # The graph: top-level module frames, layer1 expands on click, a node card.
    browser.find_element(By.ID, "tab-graph").click()
    Select(browser.find_element(By.ID, "graph-model")).select_by_visible_text("resnet18")
    browser.find_element(By.ID, "graph-load").click()
    svg = browser.find_element(By.ID, "graph-svg")
    collapsed = int(wait_for(lambda: svg.get_attribute("data-boxes"), "the graph"))
    browser.find_element(By.CSS_SELECTOR, "#graph-svg .node.module[data-path='layer1']").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#graph-svg .frame[data-path='layer1']"), "layer1 to open as a frame")
    assert int(svg.get_attribute("data-boxes")) >= collapsed
    # Its two BasicBlocks follow each other: folded into one box marked ×2 until clicked.
    folded = browser.find_element(By.CSS_SELECTOR, "#graph-svg .node.repeat[data-path='layer1.0']")
    assert folded.get_attribute("data-repeats") == "2" and "×2" in folded.text, folded.text
    with_fold = int(svg.get_attribute("data-boxes"))
    folded.click()
    wait_for(lambda: int(svg.get_attribute("data-boxes")) == with_fold + 1, "the repeated blocks to unfold")
    browser.find_element(By.CSS_SELECTOR, "#graph-svg .node.module[data-path='layer1.0']").click()
    card = browser.find_element(By.ID, "node-card")
    wait_for(lambda: card.get_attribute("data-path") == "layer1.0" and "parameters" in card.text, "the node card")
    row = next(row for row in resnet18.summary().rows if row["path"] == "layer1.0")
    assert f"parameters: {row['num_params']:,}" in card.text, card.text
    assert row["type"] in card.text
    assert "output shape: (" + ", ".join(str(dim) for dim in row["output_shape"]) + ")" in card.text, card.text
    # A layer's card: its kernel, call site and its parameters' statistics with histograms.
    search = browser.find_element(By.ID, "graph-search")
    search.send_keys("layer1.0.conv1\n")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#graph-svg .node.found"), "layer1.0.conv1")
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))",
                           browser.find_element(By.CSS_SELECTOR, "#graph-svg .node.found"))
    wait_for(lambda: card.get_attribute("data-path") == "layer1.0.conv1", "the conv's card")
    conv = next(row for row in resnet18.summary().rows if row["path"] == "layer1.0.conv1")
    assert f"parameters: {conv['num_params']:,}" in card.text, card.text
    assert "kernel size: " + "×".join(str(dim) for dim in conv["kernel_size"]) in card.text, card.text
    weights = next(parameter for parameter in resnet18.parameters(figure_format=None).parameters if parameter["name"] == "layer1.0.conv1.weight")
    assert f"mean {js_exponential(weights['stats']['mean'])}" in card.text, card.text
    assert browser.find_elements(By.CSS_SELECTOR, "#node-card svg.histogram[data-parameter='layer1.0.conv1.weight'] rect")
    shoot(browser, "node-card")
    search.clear()
    # Search expands the way to a layer; panning reports its frame rate.
    search.send_keys("layer3.1.conv2\n")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#graph-svg .node.found"), "the layer found by search")
    browser.find_element(By.ID, "graph-expand-all").click()
    ActionChains(browser).move_to_element(svg).click_and_hold().pause(0.2)
    chain = ActionChains(browser).move_to_element(svg).click_and_hold()
    for _ in range(20):
        chain.move_by_offset(5, 3).pause(0.03)
    chain.release().perform()
    fps = browser.find_element(By.ID, "graph-fps").get_attribute("data-fps")
    print(f"graph of resnet18, every module open: {svg.get_attribute('data-boxes')} boxes, {fps} fps while panning")
    shoot(browser, "graph")

    # Keyboard: the tabs follow the arrow keys.
    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.ID, "tab-graph").send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element(By.ID, "tab-explain").get_attribute("aria-selected") == "true"
    assert browser.switch_to.active_element.get_attribute("id") == "tab-explain"

    # Team status, refreshed every second. The page replaces the cards on every refresh,
    # so they are read in one script call each (an element found first may be gone by
    # the time it is read).
    browser.find_element(By.ID, "tab-status").click()

    def read(selector, attribute=None):
        return browser.execute_script(
            "const found = document.querySelector(arguments[0]);"
            "return found ? (arguments[1] ? found.getAttribute(arguments[1]) : found.textContent) : '';",
            selector, attribute)

    wait_for(lambda: "cpu" in read("#status-cards [data-field=device] strong"), "the status cards")
    first = read("#status-cards [data-field=uptime] strong")
    wait_for(lambda: read("#status-cards [data-field=uptime] strong") not in ("", first), "the next refresh")
    wait_for(lambda: len((read("#status-chart polyline", "points") or "").split()) >= 2, "two points on the chart")
    shoot(browser, "status")
    no_console_errors(browser)


def test_playground_saliency_downloads_the_clis_numbers(browser, web, fixtures_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    running, _, url = web
    digit = tmp_path / "digit.npy"
    np.save(digit, np.load(fixtures_dir / "digits_test_images.npy")[:1].astype(np.float32))
    open_page(browser, url)
    browser.find_element(By.ID, "tab-explain").click()
    Select(browser.find_element(By.ID, "explain-model")).select_by_visible_text("digits")
    browser.find_element(By.ID, "explain-input").send_keys(str(digit))
    wait_for(lambda: "(1, 1, 8, 8)" in browser.find_element(By.ID, "explain-input-info").text, "the input to load")
    browser.find_element(By.ID, "method-integrated_gradients").click()
    browser.find_element(By.ID, "explain-target").send_keys("3")
    browser.find_element(By.ID, "explain-run").click()
    cards = lambda: browser.find_elements(By.CSS_SELECTOR, ".result")  # noqa: E731
    wait_for(lambda: len(cards()) == 2 and all(card.get_attribute("data-done") == "true" for card in cards()), "both methods")
    assert browser.find_elements(By.CSS_SELECTOR, ".result[data-method=saliency] img"), "the saliency figure is shown"
    browser.find_element(By.CSS_SELECTOR, ".result[data-method=saliency] a.download").click()
    downloaded = browser.downloads / "saliency.npy"
    wait_for(downloaded.exists, "the download")
    time.sleep(0.2)
    out = tmp_path / "cli.npy"
    result = subprocess.run([str(CLI), "--addr", f"http://{running.address}", "attribute", "digits", "--input", str(digit), "--method", "saliency",
                             "--target", "3", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from_page, from_cli = np.load(downloaded), np.load(out)
    assert from_page.shape == from_cli.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(from_page, from_cli)
    assert np.abs(from_cli).max() > 0
    shoot(browser, "explain")
    no_console_errors(browser)


def test_cancelling_a_long_occlusion_frees_the_daemon(browser, web, resnet18, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, client, url = web
    image = tmp_path / "image.npy"
    np.save(image, np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))
    open_page(browser, url)
    browser.find_element(By.ID, "tab-explain").click()
    Select(browser.find_element(By.ID, "explain-model")).select_by_visible_text("resnet18")
    browser.find_element(By.ID, "explain-input").send_keys(str(image))
    wait_for(lambda: "(1, 3, 224, 224)" in browser.find_element(By.ID, "explain-input-info").text, "the input to load")
    browser.find_element(By.ID, "method-saliency").click()  # off
    browser.find_element(By.ID, "method-occlusion").click()
    browser.find_element(By.ID, "explain-target").send_keys("1")
    # 3,025 windows: minutes of work on two cores.
    browser.find_element(By.ID, "explain-params").send_keys("sliding_window_shapes=3,8,8 strides=3,4,4")
    browser.find_element(By.ID, "explain-run").click()

    def in_flight():
        return sum(model["in_flight"] for model in client.status()["models"])

    wait_for(lambda: in_flight() > 0 or browser.find_element(By.CSS_SELECTOR, ".result[data-method=occlusion]").get_attribute("data-done"),
             "the occlusion to start")
    assert browser.find_element(By.CSS_SELECTOR, ".result[data-method=occlusion]").get_attribute("data-done") is None, \
        browser.find_element(By.ID, "explain-results").text
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".result[data-method=occlusion] progress").get_attribute("value") not in (None, "0"),
             "a progress report")
    browser.find_element(By.ID, "explain-cancel").click()
    wait_for(lambda: in_flight() == 0, "the daemon to stop the cancelled occlusion", timeout=30)
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".result[data-method=occlusion]").get_attribute("data-done") == "cancelled",
             "the page to show the cancellation")
    no_console_errors(browser)


def test_a_token_is_needed_where_the_daemon_has_tokens(browser, tmp_path_factory, fixtures_dir):
    from selenium.webdriver.common.by import By

    directory = tmp_path_factory.mktemp("tokens")
    tokens = directory / "tokens.toml"
    tokens.write_text(f'[[user]]\nname = "ada"\ntoken_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\nrole = "admin"\n')
    with running_daemon(tmp_path_factory, ["--web-listen", "127.0.0.1:0", "--tokens", str(tokens)]) as running:
        url = web_url(running)
        client = layerlens.connect(f"http://{running.address}", token=TOKEN, timeout=60)
        client.add_model(fixtures_dir / "digits_cnn.pt", np.zeros((1, 1, 8, 8), dtype=np.float32), name="digits")
        open_page(browser, url)
        browser.execute_script("sessionStorage.clear()")
        open_page(browser, url)
        error = browser.find_element(By.ID, "error")
        wait_for(lambda: error.is_displayed() and "UNAUTHENTICATED" in error.text, "the refusal")
        assert "digits" not in browser.find_element(By.ID, "models-table").text
        shoot(browser, "refused")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "sign-in").click()
        wait_for(lambda: "digits" in browser.find_element(By.ID, "models-table").text, "the models after signing in")
        assert not error.is_displayed()
        browser.execute_script("sessionStorage.clear()")
        client.close()


def test_upload_generate_and_runs(browser, web, fixtures_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from training_runs import train

    _, client, url = web
    open_page(browser, url)
    # Add models through the page (a client stream over gRPC-Web): one from the file
    # chooser, one dropped on the view (a drop event carrying the file, as a browser
    # sends it).
    upload = browser.find_element(By.ID, "model-file")
    browser.execute_script("arguments[0].hidden = false", upload)
    upload.send_keys(str(fixtures_dir / "digits_cnn_static.pt2"))
    table = browser.find_element(By.ID, "models-table")
    wait_for(lambda: "digits_cnn_static" in table.text, "the uploaded model in the list")
    stored = client.model("digits_cnn_static")
    assert stored.info.format == "exported"
    dropped = fixtures_dir / "tiny_mlp_scripted.pt"
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const transfer = new DataTransfer();"
        "transfer.items.add(new File([bytes], arguments[1]));"
        "document.getElementById('view-models').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));",
        base64.b64encode(dropped.read_bytes()).decode(), dropped.name)
    wait_for(lambda: "tiny_mlp_scripted" in table.text, "the dropped model in the list")
    assert client.model("tiny_mlp_scripted").info.format == "torchscript"

    # Generation: two class objectives as one contact sheet, images as they come.
    browser.find_element(By.ID, "tab-generate").click()
    Select(browser.find_element(By.ID, "generate-model")).select_by_visible_text("digits")
    steps = browser.find_element(By.ID, "generate-steps")
    steps.clear()
    steps.send_keys("24")
    browser.find_element(By.ID, "generate-objectives").send_keys("class:3\nclass:5")
    browser.find_element(By.ID, "generate-run").click()
    sheet = browser.find_element(By.ID, "generate-sheet")
    wait_for(lambda: sheet.get_attribute("data-done"), "the generation")
    assert sheet.get_attribute("data-done") == "true", browser.find_element(By.ID, "generate-note").text
    assert int(sheet.get_attribute("data-frames") or 0) >= 2, "intermediate images were shown"
    assert "predicted" in browser.find_element(By.ID, "generate-note").text
    shoot(browser, "generate")

    # A watched training run: its figures in the Runs view.
    train("sgd", 30, watch=lambda model, optimizer: layerlens.watch(model, optimizer, every=10, run="web-run", client=client), every=10)
    browser.find_element(By.ID, "tab-runs").click()
    figures = browser.find_element(By.ID, "runs-figures")
    wait_for(lambda: figures.get_attribute("data-run") == "web-run", "the run's figures")
    for image in ("runs-ratio", "runs-flow"):
        wait_for(lambda: browser.execute_script(f"return document.getElementById('{image}').naturalWidth") > 100, f"the {image} figure")
    shoot(browser, "runs")
    no_console_errors(browser)
