"""Reference saliency maps from Captum, the tests' oracle.

    python tests/reference/captum_saliency.py JOBS_JSON

JOBS_JSON is a list of {"model": path, "input": npy path, "targets": [int, ...], "out": npy path}.
For each job the TorchScript model is loaded with torch.jit.load (eval mode) and
captum.attr.Saliency(model).attribute(x, target=targets, abs=True) is saved to "out"
as float32. One process handles every job so torch and Captum are imported once.
"""

import json
import sys

import numpy as np
import torch
from captum.attr import Saliency


def main():
    jobs = json.loads(sys.argv[1])
    for job in jobs:
        model = torch.jit.load(job["model"], map_location="cpu").eval()
        x = torch.from_numpy(np.load(job["input"]).astype(np.float32))
        attribution = Saliency(model).attribute(x, target=job["targets"], abs=True)
        np.save(job["out"], attribution.detach().numpy().astype(np.float32))


if __name__ == "__main__":
    main()
