"""Facts about a TorchScript model computed by PyTorch itself, for the tests to
compare the daemon against.

    python tests/reference/torch_facts.py MODEL INPUT_NPY

Prints JSON: {"total_params": ..., "modules": {path: qualified type}, "predicted": [...]}.
"""

import json
import sys

import numpy as np
import torch


def main():
    model = torch.jit.load(sys.argv[1], map_location="cpu").eval()
    x = torch.from_numpy(np.load(sys.argv[2]).astype(np.float32))
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    unique = {id(p): p for p in model.parameters()}
    facts = {
        "total_params": sum(p.numel() for p in unique.values()),
        "modules": {name: module.original_name for name, module in model.named_modules()},
        "predicted": predicted,
    }
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
