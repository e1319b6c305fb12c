"""Reference attributions from Captum for the CLI end-to-end test.

    python tests/reference/captum_attribute.py JOBS_JSON

Each job: {"model", "input", "method", "target", "out"} plus optional "kwargs" (passed to
attribute), "baseline" (a .npy path) and "layer" (a module path, for layer methods).
Layer methods use forward hooks, which TorchScript modules do not run, so they are
computed on the eager DigitsCNN from tests/fixtures/make_fixtures.py with the same
weights.
"""

import json
import pathlib
import sys

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerGradCam

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fixtures"))
from make_fixtures import DigitsCNN  # noqa: E402


def eager_digits(path):
    scripted = torch.jit.load(path, map_location="cpu")
    model = DigitsCNN()
    model.load_state_dict(scripted.state_dict())
    return model.eval()


def main():
    for job in json.loads(sys.argv[1]):
        x = torch.from_numpy(np.load(job["input"]).astype(np.float32))
        kwargs = dict(job.get("kwargs", {}))
        if "baseline" in job:
            kwargs["baselines"] = torch.from_numpy(np.load(job["baseline"]).astype(np.float32))
        if job["method"] == "integrated_gradients":
            model = torch.jit.load(job["model"], map_location="cpu").eval()
            result = IntegratedGradients(model).attribute(x, target=job["target"], **kwargs)
        elif job["method"] == "grad_cam":
            model = eager_digits(job["model"])
            layer = model.get_submodule(job["layer"])
            result = LayerGradCam(model, layer).attribute(x, target=job["target"], **kwargs)
        else:
            raise ValueError(f"no reference for {job['method']}")
        np.save(job["out"], result.detach().numpy().astype(np.float32))


if __name__ == "__main__":
    main()
