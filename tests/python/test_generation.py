"""Generation through a real daemon: class models and feature visualisation of the trained
digits CNN, the two parameterisations compared, counterfactuals, latent traversals of a
small generator, seeded determinism, cancellation and bad input.

What each check stands on:
- class models: the digits CNN classifies its own class visualisations (probability
  read by PyTorch in this process from the images exactly as they were fed);
- channel objective: the channel's mean activation, computed by PyTorch on the layers of
  the same TorchScript file, for the optimised image and for every held-out digit;
- high frequencies: the share of spectral power above half the Nyquist frequency,
  computed here with numpy on the returned images;
- counterfactuals: PyTorch's prediction on the returned inputs, and their L2 distance
  from the originals computed here;
- traversals: the generator run by PyTorch on the same latents.
"""

import re
import threading
import time

import grpc
import numpy as np
import pytest
import torch

import layerlens
from conftest import load_torchscript
from layerlens.v1 import common_pb2, generate_pb2

DIGITS_SHAPE = (1, 1, 8, 8)
# Steps for the digits class models: enough for every class at p >= 0.9 with either
# parameterisation (it takes 30-60 steps on this model), small enough for CI.
CLASS_STEPS = 128


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def digits_logits(digits_torchscript, images):
    with torch.no_grad():
        return digits_torchscript(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()


@pytest.mark.parametrize("parameterization", ["pixel", "fft"])
def test_class_models_are_classified_as_their_class(digits_model, digits_torchscript, parameterization):
    # One job, one image per class (Simonyan et al.'s class model, with the mean of the
    # other logits subtracted so the image is about this class rather than any class).
    result = digits_model.visualize(
        [f"class_vs_rest:{digit}" for digit in range(10)], input_shape=DIGITS_SHAPE,
        parameterization=parameterization, steps=CLASS_STEPS, seed=1, progress=False,
    )
    assert result.images.shape == (10, 1, 8, 8)
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    probabilities = softmax(digits_logits(digits_torchscript, result.images))
    assert list(probabilities.argmax(axis=1)) == list(range(10))
    chosen = probabilities[np.arange(10), np.arange(10)]
    assert chosen.min() >= 0.9, chosen
    # The daemon's own prediction agrees with PyTorch's.
    assert list(result.predicted_class) == list(range(10))
    np.testing.assert_allclose(result.predicted_probability, chosen, rtol=1e-4, atol=1e-5)
    assert result.steps == CLASS_STEPS
    assert result.figure[:8] == b"\x89PNG\r\n\x1a\n"
    # Progress events arrived during the job (16 by default), objectives rising overall.
    assert len(result.history) >= 8
    first, last = np.mean(result.history[0][1]), np.mean(result.history[-1][1])
    assert last > first


def digits_layer_outputs(digits_torchscript, images, upto):
    """The output of digits_torchscript.features[upto] on images, run module by module."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    children = dict(digits_torchscript.features.named_children())
    with torch.no_grad():
        for index in range(upto + 1):
            x = children[str(index)](x)
    return x.numpy()


def test_channel_objective_beats_the_most_activating_digit(digits_model, digits_torchscript, digits_images):
    # features.3 is the ReLU after the second convolution: (N, 32, 8, 8).
    layer, channel = "features.3", 5
    result = digits_model.visualize(f"channel:{layer}:{channel}", input_shape=DIGITS_SHAPE, steps=128, seed=0, progress=False)
    optimised = digits_layer_outputs(digits_torchscript, result.images, 3)[:, channel].mean()
    dataset = digits_layer_outputs(digits_torchscript, digits_images, 3)[:, channel].mean(axis=(1, 2))
    print(f"channel {layer}:{channel}: optimised image {optimised:.3f}, most activating held-out digit {dataset.max():.3f}")
    assert optimised > dataset.max(), (optimised, dataset.max())
    # The objective the daemon reports is that same mean.
    assert result.objective[0] == pytest.approx(optimised, rel=1e-4)


def high_frequency_share(images):
    """Per image: the share of spectral power (DC removed) above half the Nyquist
    frequency, radially, over all channels."""
    images = images - images.mean(axis=(2, 3), keepdims=True)
    power = (np.abs(np.fft.rfft2(images, norm="ortho")) ** 2).sum(axis=1)
    height, width = images.shape[2], images.shape[3]
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    high = np.sqrt(fx ** 2 + fy ** 2) > 0.25
    return (power * high).sum(axis=(1, 2)) / power.sum(axis=(1, 2))


class ColourNet(torch.nn.Module):
    """A 3-channel convolutional net for 32x32 images (random weights): two conv+ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.act1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.act2 = torch.nn.ReLU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x)))).mean((2, 3))


@pytest.fixture(scope="module")
def colour_model(client, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("generation") / "colour_net.pt"
    torch.jit.script(ColourNet().eval()).save(str(path))
    return client.add_model(path, name="generation-colour-net", example_input=torch.zeros(1, 3, 32, 32))


def test_fft_decorrelated_images_have_less_high_frequency_energy(colour_model):
    # Same objectives (four channels), steps and seed; only the parameterisation
    # differs. No transforms: they smooth both, and the point is what the
    # parameterisation itself does (Olah et al. 2017, "Preconditioning").
    objectives = [f"channel:act2:{channel}" for channel in range(4)]
    shares = {}
    for parameterization in ("pixel", "fft"):
        result = colour_model.visualize(objectives, parameterization=parameterization, steps=64, seed=3, transforms="none", progress=False)
        assert result.images.shape == (4, 3, 32, 32)
        shares[parameterization] = high_frequency_share(result.images)
    print(f"high-frequency share per image: pixel {np.round(shares['pixel'], 3)}, fft+decorrelated {np.round(shares['fft'], 3)}")
    assert shares["fft"].mean() < 0.75 * shares["pixel"].mean(), shares
    assert (shares["fft"] < shares["pixel"]).all(), shares


def test_seeded_runs_are_bit_identical(colour_model):
    run = lambda seed: colour_model.visualize("channel:act1:2", steps=16, seed=seed, figure_format=None, progress=False).images
    first, second, other = run(7), run(7), run(8)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_counterfactuals_flip_the_prediction(digits_model, digits_torchscript, fixtures_dir):
    images = np.load(fixtures_dir / "digits_test_images.npy")[:100]
    labels = np.load(fixtures_dir / "digits_test_labels.npy")[:100]
    targets = (labels + 1) % 10
    result = digits_model.counterfactual(images, [int(target) for target in targets], steps=100, progress=False)
    found = result.counterfactual
    assert found.shape == images.shape
    assert found.min() >= 0.0 and found.max() <= 1.0
    predicted = digits_logits(digits_torchscript, found).argmax(axis=1)
    flipped = predicted == targets
    distances = np.sqrt(((found - images) ** 2).reshape(len(images), -1).sum(axis=1))
    print(f"counterfactuals: {flipped.mean():.0%} flipped, mean L2 {distances[flipped].mean():.3f} (pixels in 0..1, 64 per image)")
    assert flipped.mean() >= 0.95
    assert [row["flipped"] for row in result.rows] == list(flipped)
    np.testing.assert_allclose([row["l2_distance"] for row in result.rows], distances, rtol=1e-4, atol=1e-5)
    # The prediction path starts at the original input and ends at the answer.
    row = result.rows[0]
    original_probabilities = softmax(digits_logits(digits_torchscript, images[:1]))[0]
    np.testing.assert_allclose(row["probability_path"][0], original_probabilities, rtol=1e-4, atol=1e-6)
    if row["flipped"]:
        assert row["probability_path"][-1].argmax() == targets[0]
    assert result.figure[:8] == b"\x89PNG\r\n\x1a\n"


def test_linf_counterfactuals_bound_every_change(digits_model, fixtures_dir):
    images = np.load(fixtures_dir / "digits_test_images.npy")[:8]
    result = digits_model.counterfactual(images, 3, norm="linf", steps=100, figure_format=None, progress=False)
    changes = np.abs(result.counterfactual - images).reshape(8, -1).max(axis=1)
    np.testing.assert_allclose([row["distance"] for row in result.rows], changes, rtol=1e-4, atol=1e-6)
    assert sum(row["flipped"] for row in result.rows) >= 7


class TinyGenerator(torch.nn.Module):
    """A latent (N, 6) -> image (N, 1, 8, 8) decoder with random weights."""

    def __init__(self):
        super().__init__()
        self.decode = torch.nn.Linear(6, 64)

    def forward(self, z):
        return torch.sigmoid(self.decode(z)).reshape(-1, 1, 8, 8)


@pytest.fixture(scope="module")
def generator(client, tmp_path_factory):
    torch.manual_seed(1)
    module = TinyGenerator().eval()
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    torch.jit.script(module).save(str(path))
    return client.add_model(path, name="generation-generator"), module


def test_latent_traversal_and_interpolation_match_the_generator(generator):
    handle, module = generator
    z = np.linspace(-1, 1, 6, dtype=np.float32)
    result = handle.traverse(z, dims=[0, 4], range=2.0, steps=5)
    assert (result.rows, result.columns) == (2, 5)
    expected_latents = np.repeat(z[None], 10, axis=0)
    offsets = np.linspace(-2, 2, 5, dtype=np.float32)
    expected_latents[:5, 0] += offsets
    expected_latents[5:, 4] += offsets
    np.testing.assert_allclose(result.latents, expected_latents, atol=1e-6)
    with torch.no_grad():
        expected = module(torch.from_numpy(expected_latents)).numpy()
    np.testing.assert_allclose(result.images, expected, atol=1e-6)
    assert result.figure[:8] == b"\x89PNG\r\n\x1a\n"

    end = -z
    interpolation = handle.traverse(z, z_end=end, steps=4)
    t = np.linspace(0, 1, 4, dtype=np.float32)[:, None]
    with torch.no_grad():
        expected = module(torch.from_numpy(z[None] * (1 - t) + end[None] * t)).numpy()
    assert (interpolation.rows, interpolation.columns) == (1, 4)
    np.testing.assert_allclose(interpolation.images, expected, atol=1e-6)


def test_cancelling_a_job_frees_the_worker_at_once(client, digits_model):
    # A job of 10000 steps takes tens of seconds; cancelled after its first progress
    # event, the model's worker must be free for the next request within a step or so.
    request = generate_pb2.VisualizeRequest(
        model=digits_model.id, input_shape=DIGITS_SHAPE, steps=10000, progress_every=1,
        objectives=[generate_pb2.Objective(terms=[generate_pb2.ObjectiveTerm(term="class:3")])],
        figure_format=common_pb2.FIGURE_FORMAT_NONE,
    )
    call = client._generate.Visualize(request)
    first = next(call)
    assert first.WhichOneof("event") == "progress" and first.progress.step == 1
    call.cancel()
    with pytest.raises(grpc.RpcError) as cancelled:
        for _ in call:
            pass
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    started = time.perf_counter()
    digits_model.predict(np.zeros(DIGITS_SHAPE, dtype=np.float32))
    waited = time.perf_counter() - started
    assert waited < 2.0, f"the worker was busy for {waited:.1f} s after the cancel"


def test_bad_generation_requests_name_the_problem(digits_model, generator):
    def error_of(call):
        with pytest.raises(layerlens.LayerlensError) as error:
            call()
        return str(error.value)

    missing = error_of(lambda: digits_model.visualize("channel:features.33:1", input_shape=DIGITS_SHAPE, steps=4, progress=False))
    assert "features.33" in missing and "features.3" in missing
    out_of_range = error_of(lambda: digits_model.visualize("channel:features.3:40", input_shape=DIGITS_SHAPE, steps=4, progress=False))
    assert "channel 40 is out of range" in out_of_range and "0..31" in out_of_range
    klass = error_of(lambda: digits_model.visualize("class:12", input_shape=DIGITS_SHAPE, steps=4, progress=False))
    assert "class 12 is out of range" in klass and "0..9" in klass
    too_many = error_of(lambda: digits_model.visualize("class:1", input_shape=DIGITS_SHAPE, steps=1_000_000, progress=False))
    assert "1000000 steps" in too_many and "--max-generation-steps" in too_many
    handle, _ = generator
    not_image = error_of(lambda: handle.visualize("class:1", input_shape=(1, 6), steps=4, progress=False))
    assert "[1, 6]" in not_image and "not image-like" in not_image
    no_shape = error_of(lambda: handle.visualize("class:1", steps=4, progress=False))
    assert "no input shape" in no_shape
    unknown_kind = error_of(lambda: digits_model.visualize("pixel:3", input_shape=DIGITS_SHAPE, steps=4, progress=False))
    assert "unknown kind 'pixel'" in unknown_kind
    target = error_of(lambda: digits_model.counterfactual(np.zeros(DIGITS_SHAPE, dtype=np.float32), 10, progress=False))
    assert "target class 10 is out of range" in target
    dims = error_of(lambda: handle.traverse(np.zeros(6, dtype=np.float32), dims=[9]))
    assert "latent dimension 9 is out of range" in dims
    # The daemon keeps serving.
    assert digits_model.predict(np.zeros(DIGITS_SHAPE, dtype=np.float32)).top_k[0][0][0] in range(10)


class Cliff(torch.nn.Module):
    """One output, -log(0.75 - mean pixel): maximising it brightens the image until the
    mean passes 0.75, where the logarithm's argument turns negative (NaN)."""

    def forward(self, x):
        return -torch.log(0.75 - x.mean((1, 2, 3)))[:, None]


def test_an_objective_that_stops_being_finite_is_named_at_its_first_step(client, tmp_path):
    # The daemon reads each step's objective only at progress reports (every 4th of 64
    # steps here), so a GPU need not wait for every step; the error still names the
    # first step whose objective was not finite: a job that stops one step earlier
    # runs through, and a job that stops at that step fails there.
    path = tmp_path / "cliff.pt"
    torch.jit.script(Cliff()).save(str(path))
    model = client.add_model(path, name="generation-cliff")

    def run(steps):
        return model.visualize("class:0", input_shape=(1, 1, 8, 8), parameterization="pixel", transforms="none",
                               steps=steps, seed=5, figure_format=None, progress=False)

    with pytest.raises(layerlens.LayerlensError) as error:
        run(64)
    match = re.search(r"the objective became (\S+) at step (\d+);", str(error.value))
    assert match, str(error.value)
    value, step = match.group(1), int(match.group(2))
    assert value.lower() in ("nan", "inf", "-inf") and 1 < step < 64, str(error.value)
    assert np.isfinite(run(step - 1).images).all()
    with pytest.raises(layerlens.LayerlensError, match=f"at step {step};"):
        run(step)
    assert model.predict(np.zeros((1, 1, 8, 8), dtype=np.float32)).output.shape == (1, 1)


def test_every_channel_of_a_layer_in_one_job(digits_model, digits_torchscript):
    # channel:LAYER:* expands to one image per channel (features.1: the ReLU after the
    # first convolution, 16 channels), optimised together and shown as one sheet.
    result = digits_model.visualize("channel:features.1:*", input_shape=DIGITS_SHAPE, steps=64, seed=0, progress=False)
    assert result.images.shape == (16, 1, 8, 8)
    assert result.labels == [f"channel:features.1:{channel}" for channel in range(16)]
    means = digits_layer_outputs(digits_torchscript, result.images, 1).mean(axis=(2, 3))  # (image, channel)
    # Image c drives channel c harder than any other image does, for most channels
    # (neighbouring channels of a first layer respond to similar strokes, and a dead
    # channel is flat for every image), and harder than the other images on average.
    own_best = sum(int(means[:, channel].argmax() == channel) for channel in range(16))
    assert own_best >= 12, means
    off_diagonal = (means.sum() - np.trace(means)) / (16 * 15)
    assert np.trace(means) / 16 > 1.2 * off_diagonal, means
    assert result.figure[:8] == b"\x89PNG\r\n\x1a\n"


def total_variation(images):
    return np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(images, axis=3)).mean(axis=(1, 2, 3))


def test_regularisers_do_what_they_say(colour_model):
    run = lambda **weights: colour_model.visualize("channel:act2:1", parameterization="pixel", steps=48, seed=2,
                                                   transforms="none", figure_format=None, progress=False, **weights).images
    plain, smooth, near_grey = run(), run(total_variation=2.0), run(l2=20.0)
    assert total_variation(smooth)[0] < 0.5 * total_variation(plain)[0]
    assert ((near_grey - 0.5) ** 2).mean() < 0.5 * ((plain - 0.5) ** 2).mean()


def test_diversity_spreads_the_images_of_one_objective(colour_model):
    def spread(diversity):
        images = colour_model.visualize("channel:act2:3", images_per_objective=4, diversity=diversity, diversity_layer="act1",
                                        steps=48, seed=4, figure_format=None, progress=False).images.reshape(4, -1)
        return np.mean([np.linalg.norm(images[i] - images[j]) for i in range(4) for j in range(i + 1, 4)])
    assert spread(50.0) > 1.2 * spread(0.0)


def test_normalisation_and_value_range_are_applied(colour_model):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    result = colour_model.visualize("channel:act1:0", steps=8, seed=0, mean=mean, std=std, low=-1.0, high=1.0,
                                    figure_format=None, progress=False)
    # As fed to the model: ((-1 + 2·image) - mean) / std with image in [0, 1].
    unnormalised = result.images * np.array(std, dtype=np.float32)[None, :, None, None] + np.array(mean, dtype=np.float32)[None, :, None, None]
    assert unnormalised.min() >= -1.0 - 1e-5 and unnormalised.max() <= 1.0 + 1e-5
    assert unnormalised.min() < -0.2 and unnormalised.max() > 0.2


def test_other_terms_and_intermediate_images(client, digits_model):
    for objective in ["neuron:features.3:4", "neuron:features.3:4:1:2", "layer:features.3", "class:2 + 0.5*channel:features.1:3"]:
        result = digits_model.visualize(objective, input_shape=DIGITS_SHAPE, steps=32, seed=0, transforms="none",
                                        figure_format=None, progress=False)
        assert result.objective[0] > result.history[0][1][0], objective
    direction = [1.0] * 16
    result = digits_model.visualize({"term": "direction:features.1", "direction": direction}, input_shape=DIGITS_SHAPE,
                                    steps=32, seed=0, figure_format=None, progress=False)
    assert 0.0 < result.objective[0] <= 1.0 + 1e-6  # a cosine similarity
    # Progress events carry a contact sheet every `image_every` steps.
    request = generate_pb2.VisualizeRequest(
        model=digits_model.id, input_shape=DIGITS_SHAPE, steps=32, progress_every=8, image_every=16,
        objectives=[generate_pb2.Objective(terms=[generate_pb2.ObjectiveTerm(term="class:5")])],
    )
    events = list(client._generate.Visualize(request))
    progress = [event.progress for event in events if event.WhichOneof("event") == "progress"]
    assert [event.step for event in progress] == [8, 16, 24, 32]
    with_figure = [event.step for event in progress if event.HasField("figure")]
    assert with_figure == [16, 32]
    assert progress[1].figure.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert events[-1].WhichOneof("event") == "result"
