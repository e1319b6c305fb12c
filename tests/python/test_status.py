"""The daemon's Status RPC and result cache through the Python client: `Client.status()`
reports the resident model and the cache's hits, and a repeated explanation comes back
with `.cached` set and the same numbers."""

import numpy as np


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
