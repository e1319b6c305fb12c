"""Language models from Python: a model's tokenizer, generated continuations, and
which prompt tokens drove a continuation or a class (Captum's LLMAttribution semantics,
computed by the daemon)."""

import html
import os
import pathlib

import numpy as np

from layerlens._results import _FigureDisplay
from layerlens.v1 import text_pb2


def tokenizer_json(tokenizer):
    """The tokenizer.json text of a Hugging Face tokenizer (fast), a `tokenizers.Tokenizer`,
    or a path to a tokenizer.json (or to a directory holding one)."""
    if isinstance(tokenizer, (str, os.PathLike)):
        path = pathlib.Path(tokenizer)
        if path.is_dir():
            path = path / "tokenizer.json"
        return path.read_bytes()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.to_str().encode("utf-8")
    if hasattr(tokenizer, "to_str"):
        return tokenizer.to_str().encode("utf-8")
    raise TypeError(
        f"cannot read a tokenizer from {type(tokenizer).__name__}: give a fast Hugging Face tokenizer, "
        "a tokenizers.Tokenizer, or the path of a tokenizer.json"
    )


class TextAttribution(_FigureDisplay):
    """Which prompt features (tokens or template values) drove the output.

    `seq_attr` (features,): attribution to the whole continuation (or the class);
    `token_attr` (output tokens, features), None for a class and for LIME and Kernel SHAP; `input_tokens`,
    `output_tokens`, `output_probs`; `html` is the token heat map as a self-contained
    HTML fragment (save it with `save_html`). Displays as that heat map in Jupyter.
    """

    def __init__(self, message):
        self.method = message.method
        self.input_tokens = list(message.input_tokens)
        self.output_tokens = list(message.output_tokens)
        self.seq_attr = np.array(message.seq_attr)
        features = len(self.input_tokens)
        self.token_attr = np.array(message.token_attr).reshape(-1, features) if message.token_attr else None
        self.output_probs = np.array(message.output_probs)
        self.output_ids = list(message.output_ids)
        self.html = message.html
        self.passes = message.passes
        self.sequences = message.sequences
        self._set_figure(message.figure if message.HasField("figure") else None)

    def save_html(self, path):
        """Writes the token heat map as an HTML file."""
        pathlib.Path(path).write_text(f"<!doctype html><meta charset='utf-8'>{self.html}", encoding="utf-8")

    def _repr_html_(self):
        return self.html

    def __repr__(self):
        return f"TextAttribution({self.method}, {len(self.input_tokens)} features → {''.join(self.output_tokens)!r})"


class GeneratedText:
    """A continuation: `text` (without the prompt), `ids`, `tokens`."""

    def __init__(self, message):
        self.text = message.text
        self.ids = list(message.ids)
        self.tokens = list(message.tokens)
        self.prompt_ids = list(message.prompt_ids)

    def _repr_html_(self):
        return f"<pre>{html.escape(self.text)}</pre>"

    def __repr__(self):
        return f"GeneratedText({self.text!r})"


def attribute_text_request(model_id, text, target, method, *, template, values, baselines, skip_tokens, baseline_token, attr_target, n_samples,
                           seed, max_new_tokens, figure_format):
    request = text_pb2.AttributeTextRequest(
        model=model_id, method=method, skip_tokens=[str(token) for token in (skip_tokens or [])],
        baseline_token=str(baseline_token) if baseline_token is not None else "", attr_target=attr_target,
        n_samples=int(n_samples or 0), seed=int(seed), max_new_tokens=int(max_new_tokens or 0), figure_format=figure_format,
    )
    if template is not None:
        if isinstance(values, dict):
            names, values = list(values), list(values.values())
            baselines = [baselines[name] for name in names] if isinstance(baselines, dict) else baselines
        else:
            names = []
        request.template.CopyFrom(text_pb2.TextTemplate(template=template, values=[str(v) for v in values], names=names,
                                                        baselines=[str(b) for b in (baselines or [])]))
    else:
        if text is None:
            raise ValueError("give the prompt text, or template= with values=")
        request.text = text
    if isinstance(target, str):
        request.target_text = target
    elif target is not None:
        request.target_class = int(target)
    return request
