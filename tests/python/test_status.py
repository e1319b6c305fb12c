"""The daemon's Status RPC and result cache through the Python client: `Client.status()`
reports the resident model and the cache's hits, and a repeated explanation comes back
with `.cached` set and the same numbers."""

import numpy as np
import pytest


def test_status_reports_resident_models_and_cache_hits(client, digits_model, digits_images):
    x = digits_images[3:6]
    # A request no other test makes (batch of 3, depth 2), so the first is a miss.
    first = digits_model.summary(input_shape=(3, 1, 8, 8), depth=2)
    before = client.status()
    again = digits_model.summary(input_shape=(3, 1, 8, 8), depth=2)
    after = client.status()

    assert not first.cached and again.cached
    assert again.rows == first.rows and again.total_params == first.total_params
    assert after["cache"]["hits"] == before["cache"]["hits"] + 1
    assert after["cache"]["capacity_bytes"] > 0 and after["cache"]["entries"] >= 1
    assert after["version"] and after["device"] == "cpu" and after["uptime_seconds"] > 0
    resident = {model["id"]: model for model in after["models"]}
    assert digits_model.id in resident
    assert "digits" in resident[digits_model.id]["names"]
    # Parameters and buffers of the CNN: at least its float32 parameters.
    assert resident[digits_model.id]["resident_bytes"] >= 4 * first.total_params
    assert resident[digits_model.id]["in_flight"] == 0

    predicted = [digits_model.predict(x, top_k=2) for _ in range(2)]
    assert predicted[1].cached
    np.testing.assert_array_equal(predicted[0].output, predicted[1].output)
    attributions = [digits_model.attribute(x, method="saliency", target=1, figure_format=None) for _ in range(2)]
    assert attributions[1].cached
    np.testing.assert_array_equal(attributions[0].values, attributions[1].values)


def test_status_reports_queues_memory_and_pins(client, daemon, digits_model):
    digits_model.predict(np.zeros((1, 1, 8, 8), dtype=np.float32))
    status = client.status()
    # The session daemon runs with the defaults (README "Serving a team").
    assert status["queue"] == {"max_queue": 256, "max_batch_size": 8, "max_batch_delay_ms": 2.0}
    assert status["memory"]["budget_bytes"] == 0 and status["memory"]["evictions"] == 0
    assert status["memory"]["used_bytes"] >= sum(model["resident_bytes"] for model in status["models"]) > 0
    entry = next(model for model in status["models"] if model["id"] == digits_model.id)
    assert entry["ready"] and entry["queued"] == 0 and entry["idle_seconds"] >= 0

    # Without a tokens file the caller may pin (everyone is admin on a loopback daemon).
    assert digits_model.pin() is digits_model and digits_model.info.pinned
    assert next(model for model in client.status()["models"] if model["id"] == digits_model.id)["pinned"]
    assert any(info.pinned for info in client.models() if info.id == digits_model.id)
    digits_model.unpin()
    assert not digits_model.info.pinned


def test_priority_and_user_are_sent_and_checked(daemon, digits_model):
    import layerlens

    with pytest.raises(ValueError, match="priority is 'urgent'"):
        layerlens.connect(f"http://{daemon.address}", priority="urgent")
    with layerlens.connect(f"http://{daemon.address}", priority="batch", user="ci-job", timeout=60) as batch_client:
        answer = batch_client.model(digits_model.id).predict(np.zeros((1, 1, 8, 8), dtype=np.float32), top_k=1)
        assert answer.output.shape == (1, 10)
