"""Captum 0.9 references for every attribution method layerlensd serves: the oracle of
tests/python/test_attribution_fidelity.py.

    captum_attribution(method, model, inputs, targets, params, eager_model=None, layer=None)

runs the Captum class that the daemon's method follows on the same model and inputs, with
the request's parameters translated from the daemon's wire form into Captum's arguments.
`params` is what the test passes to `Model.attribute(**params)`: text values under Captum's
names (`n_steps=16`, `sliding_window_shapes="1,3,3"`, `sliding_window_shapes.1="1"` for the
second input), arrays for tensors, a tuple of arrays for one tensor per input. The result
is `(attributions, deltas)`: one float numpy array per input, and Captum's convergence
delta per row for integrated gradients (else None).

Randomness is reproduced, never compared statistically here: a `seed` goes to
`torch.manual_seed` right before Captum draws (the daemon seeds libtorch's default CPU
generator the same way and draws in Captum's order); explicit `noise`,
`baseline_indices` and `rand_coefficients` are forced on Captum by replacing
`torch.normal`, `np.random.choice` and `np.random.uniform` while it runs, so Captum's own
code does the rest. A sampled method with neither is refused: its numbers can only be
compared statistically, which the test file does itself.

`internal_batch_size` only splits the daemon's passes; it goes to Captum's
IntegratedGradients, which takes it, and is left out elsewhere, as it must not change
any answer.

Two baselines of integrated gradients are layerlens extensions that Captum lacks:
`baselines="uniform"` (torch.rand_like per input after the seed, scaled to
[baseline_low, baseline_high], default the input's range) and `baselines="blur"` (a
separable Gaussian blur of the input, sigma `blur_sigma` pixels, default 3, truncated at
3 sigma but at most the image size - 1, reflected at the borders). They are built here
as documented and handed to Captum's IntegratedGradients as ordinary baseline tensors.
"""

import contextlib
import math
from unittest import mock

import numpy as np
import torch
from captum.attr import (
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    LayerActivation,
    LayerGradCam,
    LayerGradientXActivation,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

NOISE_TUNNEL_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
LAYER_METHODS = ("grad_cam", "layer_activation", "layer_gradient_x_activation")


class Unreproducible(ValueError):
    """The request draws random numbers that neither a seed nor explicit draws pin down."""


# --- reading the request's parameters --------------------------------------------------


def _bool(value, default):
    if value is None:
        return default
    if isinstance(value, str):
        return {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}[value]
    return bool(value)


def _floats(value):
    """A float or comma-separated floats (text or sequence) as a list of floats."""
    if isinstance(value, str):
        return [float(part) for part in value.split(",")]
    if isinstance(value, (list, tuple)):
        return [float(part) for part in value]
    return [float(value)]


def _ints(value):
    if isinstance(value, str):
        return tuple(int(part) for part in value.split(","))
    if isinstance(value, (list, tuple)):
        return tuple(int(part) for part in value)
    return (int(value),)


def _is_array(value):
    return isinstance(value, np.ndarray) and value.ndim > 0


def _per_input(params, name, n_inputs):
    """The value of option `name` for each input: a tuple of arrays gives one each,
    `name.1`, `name.2`, ... override the plain `name` for later inputs."""
    value = params.get(name)
    if isinstance(value, (tuple, list)) and value and all(_is_array(item) for item in value):
        return list(value) + [None] * (n_inputs - len(value))
    values = [value] * n_inputs
    for index in range(1, n_inputs):
        if f"{name}.{index}" in params:
            values[index] = params[f"{name}.{index}"]
    return values


def _stdevs(params, default, n_inputs):
    """Captum's `stdevs`: a float for all inputs or a tuple with one per input."""
    if params.get("stdevs") is None:
        return float(default)
    values = _floats(params["stdevs"])
    if len(values) == 1:
        return values[0]
    assert len(values) == n_inputs, f"stdevs {values} for {n_inputs} inputs"
    return tuple(values)


def _tensor_like_input(array, input_tensor):
    """An array option as Captum takes it: the input's shape as is; a row shape gets a
    leading batch dimension of 1 (Captum broadcasts that over the batch)."""
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if tuple(tensor.shape) == tuple(input_tensor.shape[1:]):
        tensor = tensor.unsqueeze(0)
    return tensor


def _number_or_tensor(value, input_tensor):
    """A perturbation baseline: a number (text or float), a one-value array, or an array."""
    if value is None:
        return 0.0
    if _is_array(value):
        if value.size == 1:
            return float(value.reshape(-1)[0])
        return _tensor_like_input(value, input_tensor)
    return float(value)


# --- integrated gradients' baselines ------------------------------------------------------


def gaussian_blur(input_tensor, sigma):
    """layerlens' blurred baseline: a separable Gaussian over (height, width) of a
    (batch, channels, height, width) tensor, truncated at 3 sigma (at most size - 1),
    reflected at the borders."""
    _, channels, height, width = input_tensor.shape
    radius = max(1, min(math.ceil(3.0 * sigma), min(height, width) - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(input_tensor.dtype)
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = torch.nn.functional.pad(input_tensor, (radius, radius, 0, 0), mode="reflect")
    rows = torch.nn.functional.conv2d(padded, horizontal, groups=channels)
    padded = torch.nn.functional.pad(rows, (0, 0, radius, radius), mode="reflect")
    return torch.nn.functional.conv2d(padded, vertical, groups=channels)


def integrated_gradients_baselines(inputs, params):
    """One Captum baseline per input (a float or a tensor), consuming torch's generator
    for `uniform` in the daemon's order (the caller has seeded it)."""
    kind = params.get("baselines")
    arrays = _per_input(params, "baselines", len(inputs))
    baselines = []
    for input_tensor, array in zip(inputs, arrays):
        if _is_array(array):
            baselines.append(_number_or_tensor(array, input_tensor))
        elif kind is None or kind in ("zeros", "zero"):
            baselines.append(0.0)
        elif kind == "blur":
            baselines.append(gaussian_blur(input_tensor, float(params.get("blur_sigma", 3.0))))
        elif kind == "uniform":
            # The daemon takes the range from the float32 input when none is given.
            low = float(params["baseline_low"]) if "baseline_low" in params else float(input_tensor.min())
            high = float(params["baseline_high"]) if "baseline_high" in params else float(input_tensor.max())
            baselines.append(torch.rand_like(input_tensor) * (high - low) + low)
        else:
            baselines.append(float(kind))
    return tuple(baselines)


def _integrated_gradients_kwargs(inputs, params):
    kwargs = {
        "baselines": integrated_gradients_baselines(inputs, params),
        "n_steps": int(params.get("n_steps", 50)),
        "method": params.get("method", "gausslegendre"),
    }
    if params.get("internal_batch_size") is not None:
        kwargs["internal_batch_size"] = int(params["internal_batch_size"])
    return kwargs


# --- forcing Captum's random draws ------------------------------------------------------


@contextlib.contextmanager
def forced_normal(noises):
    """torch.normal answers the given arrays, one per call in order, as Captum's
    NoiseTunnel asks for one noise tensor per input and partition."""
    queue = [torch.from_numpy(np.asarray(noise, dtype=np.float32)) for noise in noises]

    def normal(mean, std, *args, **kwargs):
        assert queue, "Captum drew more noise tensors than were given"
        noise = queue.pop(0)
        assert tuple(noise.shape) == tuple(std.shape), f"noise {tuple(noise.shape)} for a draw of {tuple(std.shape)}"
        return noise.to(std.dtype) + mean

    with mock.patch.object(torch, "normal", normal):
        yield
    assert not queue, f"{len(queue)} given noise tensors were not drawn"


@contextlib.contextmanager
def forced_numpy_draws(baseline_indices, rand_coefficients):
    """np.random.choice and np.random.uniform answer the given values: GradientShap's
    baseline draws (one call per input, the same indices for each, as the daemon uses one
    set for all inputs) and its interpolation coefficients."""

    def choice(count, size, *args, **kwargs):
        indices = np.asarray(baseline_indices).astype(np.int64)
        assert size == len(indices), f"Captum drew {size} baseline indices, {len(indices)} were given"
        assert indices.min() >= 0 and indices.max() < count
        return indices

    def uniform(low, high, size, *args, **kwargs):
        coefficients = np.asarray(rand_coefficients, dtype=np.float64)
        assert (low, high, size) == (0.0, 1.0, len(coefficients)), (low, high, size)
        return coefficients

    patches = contextlib.ExitStack()
    if baseline_indices is not None:
        patches.enter_context(mock.patch.object(np.random, "choice", choice))
    if rand_coefficients is not None:
        patches.enter_context(mock.patch.object(np.random, "uniform", uniform))
    with patches:
        yield


def _noise_arrays(params, n_inputs):
    noises = _per_input(params, "noise", n_inputs)
    return None if noises[0] is None else noises


def _seeded_or_forced(params, n_inputs, needs_torch_draws):
    """A context in which Captum's torch draws are the daemon's: the seed applied, or the
    explicit noise forced."""
    noises = _noise_arrays(params, n_inputs)
    if noises is not None:
        return forced_normal(noises)
    if params.get("seed") is None and needs_torch_draws:
        raise Unreproducible("a sampled method without seed or noise can only be compared statistically")
    return contextlib.nullcontext()


# --- the methods ------------------------------------------------------------------------


def _base_method(model, params):
    """The NoiseTunnel's inner Captum method and the keyword arguments it takes."""
    base = params.get("base_method", "saliency")
    if base == "saliency":
        return Saliency(model), {"abs": _bool(params.get("abs"), True)}
    if base == "input_x_gradient":
        return InputXGradient(model), {}
    if base == "integrated_gradients":
        return IntegratedGradients(model, multiply_by_inputs=_bool(params.get("multiply_by_inputs"), True)), None
    raise ValueError(f"no Captum reference for base_method {base!r}")


def _noise_tunnel(method, model, inputs, targets, params):
    seed = params.get("seed")
    with _seeded_or_forced(params, len(inputs), needs_torch_draws=True):
        if seed is not None:
            torch.manual_seed(int(seed))
        base, kwargs = _base_method(model, params)
        if kwargs is None:
            # Integrated gradients' uniform baselines are drawn after the seed, before
            # the noise, in both the daemon and here.
            kwargs = _integrated_gradients_kwargs(inputs, params)
        batch_size = params.get("nt_samples_batch_size")
        attributions = NoiseTunnel(base).attribute(
            inputs,
            nt_type=method,
            nt_samples=int(params.get("nt_samples", 5)),
            nt_samples_batch_size=None if batch_size is None else int(batch_size),
            stdevs=_stdevs(params, 1.0, len(inputs)),
            target=targets,
            **kwargs,
        )
    return attributions, None


def _gradient_shap(model, inputs, targets, params):
    distributions = tuple(
        torch.from_numpy(np.asarray(array, dtype=np.float32)) for array in _per_input(params, "baselines", len(inputs))
    )
    indices, coefficients = params.get("baseline_indices"), params.get("rand_coefficients")
    if indices is None or coefficients is None:
        raise Unreproducible("gradient_shap needs explicit baseline_indices and rand_coefficients to be reproduced")
    stdevs = _stdevs(params, 0.0, len(inputs))
    noisy = _noise_arrays(params, len(inputs)) is not None or stdevs != 0.0
    with _seeded_or_forced(params, len(inputs), needs_torch_draws=noisy), forced_numpy_draws(indices, coefficients):
        if params.get("seed") is not None:
            torch.manual_seed(int(params["seed"]))
        attributions = GradientShap(model).attribute(
            inputs,
            baselines=distributions,
            n_samples=int(params.get("n_samples", 5)),
            stdevs=stdevs,
            target=targets,
        )
    return attributions, None


def _occlusion(model, inputs, targets, params):
    windows = tuple(_ints(value) for value in _per_input(params, "sliding_window_shapes", len(inputs)))
    strides = []
    for window, value in zip(windows, _per_input(params, "strides", len(inputs))):
        stride = (1,) if value is None else _ints(value)
        strides.append(stride * len(window) if len(stride) == 1 else stride)
    baselines = tuple(
        _number_or_tensor(value, input_tensor)
        for value, input_tensor in zip(_per_input(params, "baselines", len(inputs)), inputs)
    )
    attributions = Occlusion(model).attribute(
        inputs, sliding_window_shapes=windows, strides=tuple(strides), baselines=baselines, target=targets
    )
    return attributions, None


def _feature_ablation(model, inputs, targets, params):
    masks = _per_input(params, "feature_mask", len(inputs))
    feature_mask = None
    if masks[0] is not None:
        feature_mask = tuple(_tensor_like_input(mask, input_tensor).long() for mask, input_tensor in zip(masks, inputs))
    baselines = tuple(
        _number_or_tensor(value, input_tensor)
        for value, input_tensor in zip(_per_input(params, "baselines", len(inputs)), inputs)
    )
    attributions = FeatureAblation(model).attribute(inputs, baselines=baselines, target=targets, feature_mask=feature_mask)
    return attributions, None


def _layer_method(method, eager_model, inputs, targets, params, layer):
    # Captum's layer methods read the layer through forward hooks, which TorchScript
    # modules never run, so they work on the eager module carrying the same weights.
    assert eager_model is not None, "layer methods need the eager module"
    module = eager_model.get_submodule(layer)
    if method == "grad_cam":
        value = LayerGradCam(eager_model, module).attribute(
            inputs,
            target=targets,
            relu_attributions=_bool(params.get("relu_attributions"), False),
            attr_dim_summation=_bool(params.get("attr_dim_summation"), True),
        )
    elif method == "layer_activation":
        value = LayerActivation(eager_model, module).attribute(inputs)
    else:
        multiply = _bool(params.get("multiply_by_inputs"), True)
        value = LayerGradientXActivation(eager_model, module, multiply_by_inputs=multiply).attribute(inputs, target=targets)
    return (value,), None


def captum_attribution(method, model, inputs, targets, params, eager_model=None, layer=None):
    """Captum's answer for a layerlensd request: (one numpy array per input, or the
    layer's for layer methods; per-row convergence deltas or None).

    model: the TorchScript module (loaded in this process); inputs: a tuple of float32
    tensors (batch, ...); targets: one int per row (resolved by the caller); params: the
    keyword options exactly as sent to the daemon.
    """
    inputs = tuple(input_tensor.detach().clone() for input_tensor in inputs)
    deltas = None
    if method == "saliency":
        attributions = Saliency(model).attribute(inputs, target=targets, abs=_bool(params.get("abs"), True))
    elif method == "input_x_gradient":
        attributions = InputXGradient(model).attribute(inputs, target=targets)
    elif method == "integrated_gradients":
        if params.get("seed") is not None:
            torch.manual_seed(int(params["seed"]))
        multiply = _bool(params.get("multiply_by_inputs"), True)
        attributions, deltas = IntegratedGradients(model, multiply_by_inputs=multiply).attribute(
            inputs, target=targets, return_convergence_delta=True, **_integrated_gradients_kwargs(inputs, params)
        )
    elif method in NOISE_TUNNEL_TYPES:
        attributions, deltas = _noise_tunnel(method, model, inputs, targets, params)
    elif method == "gradient_shap":
        attributions, deltas = _gradient_shap(model, inputs, targets, params)
    elif method == "occlusion":
        attributions, deltas = _occlusion(model, inputs, targets, params)
    elif method == "feature_ablation":
        attributions, deltas = _feature_ablation(model, inputs, targets, params)
    elif method in LAYER_METHODS:
        attributions, deltas = _layer_method(method, eager_model, inputs, targets, params, layer)
    else:
        raise ValueError(f"no Captum reference for method {method!r}")
    if isinstance(attributions, torch.Tensor):
        attributions = (attributions,)
    arrays = tuple(attribution.detach().cpu().numpy() for attribution in attributions)
    return arrays, None if deltas is None else deltas.detach().cpu().numpy()
