"""Text attribution: layerlensd against Captum's LLMAttribution on a GPT-2-small-sized model.

    PY="$(scripts/setup.sh | tail -n 1)"
    cargo build --release --bin layerlensd
    "$PY" tests/bench/bench_text.py [--quick] [--threads 2]

Why it exists: a perturbation attribution of text runs the language model once per
perturbed prompt. Captum's LLMAttribution runs each perturbation on its own, and by
default token by token along the target (one forward per target token, with or without
a KV cache); the daemon scores every target token of a perturbed prompt in one pass and
batches perturbations into passes. The target: the daemon at most 0.5x Captum's time.

Model: `GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12, n_positions=1024,
vocab_size=<the tokenizer's>))` with seeded random weights (GPT-2 small without its
50257-token vocabulary), the BPE tokenizer of tests/python/language_models.py (vocab
300, trained on its small corpus), exported with torch.export like language_models.export
(dynamic batch and sequence, the sequence bounded by n_positions). `--quick`: the same
with n_embd=64, n_layer=2, n_head=2, n_positions=128 (a smoke run).

Rows, on the same weights, prompt and target:
1. feature ablation of a 64-token prompt (corpus words, checked to tokenize to exactly 64
   tokens) with a 16-token target; one feature per token;
2. Shapley value sampling, n_samples=5, of a 16-token prompt with a 4-token target,
   seeded the same way on both sides (torch.manual_seed(seed) before Captum, seed=seed
   for the daemon);
3. `lig`: layer integrated gradients on the token embedding per output token (Captum's
   LLMGradientAttribution, 50 steps), a 16-token prompt with a 4-token target;
4. `kernel_shap` (not run by default): Kernel SHAP, n_samples=50, 32 -> 8 tokens.
`--rows fa,shapley,lig` (the default) picks rows.
Captum is timed on each path it offers: `use_cached_outputs=False` (token by token,
no cache), `use_cached_outputs=True` (its default: token by token with the KV cache;
with transformers 5 it raises IndexError on the 64-token prompt and on the short prompt
runs but gives other log-probabilities from the second target token on, so it is timed
and reported as it behaves) and `forward_in_tokens=False` ("one-pass": one forward of
prompt + target per perturbation, the daemon's way).

Timing: daemon = one `Model.attribute_text()` call of the Python client (gRPC on
loopback, release layerlensd, `--cache-bytes 0`, no figure), warmed by one untimed call,
median of --rounds calls. Captum in this process (after 12 untimed eager forwards),
median of up to --rounds runs interleaved with the daemon's; a Captum path whose first
run takes longer than --slow-s (60 s) is run once. `--paths sequence --rounds 5` times
the daemon against Captum's one-pass path only (about 5 minutes; the full run took
18 to 22 minutes on 2 shared cores, most of it Captum's uncached feature ablation). Threads: torch.set_num_threads(--threads) here, OMP_NUM_THREADS
=--threads for the daemon (as bench_exported.py); the CPU seconds each side used per
call are printed too. The largest |daemon - Captum| over seq_attr and token_attr is
checked with np.allclose(atol=1e-4 x the largest |Captum value|, rtol=1e-4), and shown
next to the largest difference between Captum's uncached and one-pass results (the same
numbers from float32 forwards of other lengths: float32's noise floor for the row). The
daemon's target-token probabilities for the unperturbed prompt are also checked against
one eager forward of prompt + target in this process.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "clients" / "python" / "src"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))
import layerlens  # noqa: E402
from bench_attribution import ForeignCpuMeter, process_cpu_seconds, running_daemon  # noqa: E402
from language_models import CORPUS, LogitsOnly, bpe_tokenizer  # noqa: E402

BINARY = REPO_ROOT / "target" / "release" / "layerlensd"
SIZES = {
    "full": dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024),
    "quick": dict(n_embd=64, n_layer=2, n_head=2, n_positions=128),
}
SEED = 11
VARIANT_NAMES = {
    "uncached": "uncached",
    "cached": "cached (its default)",
    "sequence": "one-pass (forward_in_tokens=False)",
    "gradient": "LLMGradientAttribution",
}
# name: (method, prompt tokens, target tokens, n_samples, Captum paths; None: --paths)
ROWS = {
    "fa": ("feature_ablation", 64, 16, None, None),
    "shapley": ("shapley_value_sampling", 16, 4, 5, None),
    "lig": ("layer_integrated_gradients", 16, 4, None, ["gradient"]),
    "kernel_shap": ("kernel_shap", 32, 8, 50, None),
}


def words():
    """The corpus's words in order, each once, punctuation kept on the word."""
    seen = []
    for sentence in CORPUS:
        for word in sentence.split():
            if word not in seen:
                seen.append(word)
    return seen


def text_of_tokens(fast, n_tokens, start, leading_space):
    """Corpus words from `start` on, concatenated until the text tokenizes to exactly
    n_tokens (a word that would overshoot is skipped)."""
    vocabulary = words()
    text = ""
    for step in range(10 * len(vocabulary)):
        word = vocabulary[(start + step) % len(vocabulary)]
        candidate = f"{text} {word}" if (text or leading_space) else word
        length = len(fast.encode(candidate, add_special_tokens=False))
        if length <= n_tokens:
            text = candidate
        if length == n_tokens:
            return text
    raise RuntimeError(f"no text of exactly {n_tokens} tokens from the corpus")


def build_model(vocab_size, size):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, bos_token_id=1, eos_token_id=1, pad_token_id=1, **SIZES[size])
    return GPT2LMHeadModel(config).eval()


def export(model, path):
    """LogitsOnly(model) as a torch.export archive, dynamic batch and sequence (as language_models.export)."""
    wrapped = LogitsOnly(model).eval()
    example = torch.randint(2, 50, (2, 8))
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=model.config.n_positions)
    program = torch.export.export(wrapped, (example,), dynamic_shapes=({0: batch, 1: sequence},), strict=False)
    torch.export.save(program, str(path))


def captum_call(model, fast, method, prompt, target, variant, n_samples=None):
    """One Captum LLMAttribution run; variant: 'uncached', 'cached' or 'sequence'; or one
    LLMGradientAttribution run of LayerIntegratedGradients on the token embedding
    (variant 'gradient', Captum's defaults: 50 steps, all in one batch per output token)."""
    from captum.attr import (FeatureAblation, KernelShap, LayerIntegratedGradients, LLMAttribution, LLMGradientAttribution,
                             ShapleyValueSampling, TextTokenInput)

    if variant == "gradient":
        algorithm = LayerIntegratedGradients(model, model.transformer.wte)
        return LLMGradientAttribution(algorithm, fast).attribute(TextTokenInput(prompt, fast), target=target)
    algorithm = {"feature_ablation": FeatureAblation, "shapley_value_sampling": ShapleyValueSampling, "kernel_shap": KernelShap}[method](model)
    options = {
        "uncached": {"use_cached_outputs": False},
        "cached": {"use_cached_outputs": True},
        "sequence": {"use_cached_outputs": False, "forward_in_tokens": False},
    }[variant]
    if n_samples is not None:
        options["n_samples"] = n_samples
        torch.manual_seed(SEED)
    return LLMAttribution(algorithm, fast).attribute(TextTokenInput(prompt, fast), target=target, **options)


def flat(result):
    """seq_attr and token_attr (when there is one) of a daemon answer or a Captum result, as one float64 vector."""
    parts = [np.asarray(result.seq_attr, dtype=np.float64).ravel()]
    if result.token_attr is not None:
        parts.append(np.asarray(result.token_attr, dtype=np.float64).ravel())
    return np.concatenate(parts)


def difference(answer, expected):
    reference, ours = flat(expected), flat(answer)
    scale = float(np.abs(reference).max())
    agree = bool(np.allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale))
    return float(np.abs(ours - reference).max()), scale, agree


def run_row(label, handle, daemon_pid, model, fast, method, prompt, target, args, n_samples=None, variants=None):
    """Times one attribution on the daemon and on each Captum path; returns result rows."""
    kwargs = dict(method=method, figure_format=None)
    if n_samples is not None:
        kwargs.update(n_samples=n_samples, seed=SEED)

    def daemon_once():
        cpu = process_cpu_seconds(daemon_pid)
        start = time.perf_counter()
        answer = handle.attribute_text(prompt, target=target, **kwargs)
        return answer, time.perf_counter() - start, process_cpu_seconds(daemon_pid) - cpu

    answer, warm_s, _ = daemon_once()
    # An independent reference for the unperturbed prompt: one eager forward of prompt +
    # target, the target tokens' probabilities against the daemon's output_probs.
    with torch.no_grad():
        prompt_ids, target_ids = fast.encode(prompt), fast.encode(target, add_special_tokens=False)
        logits = model(input_ids=torch.tensor([prompt_ids + target_ids]), use_cache=False).logits[0]
        probabilities = torch.softmax(logits.double(), -1)
        eager = np.array([float(probabilities[len(prompt_ids) - 1 + index, token]) for index, token in enumerate(target_ids)])
    probability_error = float(np.abs(np.asarray(answer.output_probs) / eager - 1).max())
    threads_seen = len(os.listdir(f"/proc/{daemon_pid}/task"))
    print(f"{label}: daemon warm-up {warm_s:.2f} s, {answer.passes} passes for {answer.sequences} sequences, "
          f"{len(answer.input_tokens)} features -> {len(answer.output_tokens)} target tokens; daemon has {threads_seen} OS threads; "
          f"output_probs vs one eager forward: max relative error {probability_error:.1e}",
          file=sys.stderr)
    variants = variants or args.paths.split(",")
    times = {"daemon": [], **{variant: [] for variant in variants}}
    cpu = {"daemon": [], **{variant: [] for variant in variants}}
    results, failures = {}, {}
    meter = ForeignCpuMeter(os.getpid(), daemon_pid)
    started = time.perf_counter()
    for round_index in range(args.rounds):
        answer_now, seconds, cpu_seconds = daemon_once()
        times["daemon"].append(seconds)
        cpu["daemon"].append(cpu_seconds)
        assert np.array_equal(answer_now.seq_attr, answer.seq_attr), "the daemon is deterministic"
        print(f"  round {round_index + 1}: daemon {seconds:.2f} s (CPU {cpu_seconds:.1f} s)", file=sys.stderr)
        for variant in variants:
            if variant in failures:
                continue
            if times[variant] and max(times[variant]) > args.slow_s:
                continue
            cpu_start, start = time.process_time(), time.perf_counter()
            try:
                expected = captum_call(model, fast, method, prompt, target, variant, n_samples)
            except Exception as error:  # noqa: BLE001 - reported in the table
                failures[variant] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                print(f"  Captum {variant} fails: {failures[variant]}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - start
            times[variant].append(seconds)
            cpu[variant].append(time.process_time() - cpu_start)
            results.setdefault(variant, expected)
            print(f"  round {round_index + 1}: Captum {variant} {seconds:.2f} s (CPU {cpu[variant][-1]:.1f} s)", file=sys.stderr)
    foreign = meter.seconds()
    elapsed = time.perf_counter() - started
    rows = []
    daemon_s = statistics.median(times["daemon"])
    # Captum against itself: its token-by-token and one-pass paths compute the same
    # log-probabilities from float32 forwards of different lengths; how far apart they
    # land is float32's noise floor for this row.
    spread = float(np.abs(flat(results["uncached"]) - flat(results["sequence"])).max()) if {"uncached", "sequence"} <= results.keys() else None
    for variant in variants:
        name = f"{label}, Captum {VARIANT_NAMES[variant]}"
        if variant in failures:
            rows.append(dict(name=name, daemon=daemon_s, captum=None, runs=0, failure=failures[variant]))
            continue
        diff, scale, agree = difference(answer, results[variant])
        rows.append(dict(name=name, daemon=daemon_s, captum=statistics.median(times[variant]), runs=len(times[variant]),
                         diff=diff, scale=scale, agree=agree, spread=spread, daemon_cpu=statistics.median(cpu["daemon"]),
                         captum_cpu=statistics.median(cpu[variant])))
    return rows, dict(label=label, probability_error=probability_error, passes=answer.passes, sequences=answer.sequences, threads=threads_seen, foreign=foreign,
                      elapsed=elapsed, daemon_times=times["daemon"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-layer, 64-wide model instead (smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-s", type=float, default=60.0, help="a Captum path whose first run takes longer runs once")
    parser.add_argument("--paths", default="uncached,cached,sequence",
                        help="Captum paths to time: uncached, cached, sequence (one-pass), comma-separated")
    parser.add_argument("--rows", default="fa,shapley,lig", help=f"rows to run, comma-separated, of: {', '.join(ROWS)}")
    parser.add_argument("--daemon", default=str(BINARY))
    args = parser.parse_args()
    if not set(args.rows.split(",")) <= set(ROWS):
        parser.error(f"--rows takes {', '.join(ROWS)}")
    if not set(args.paths.split(",")) <= set(VARIANT_NAMES):
        parser.error(f"--paths takes {', '.join(VARIANT_NAMES)}")
    if not pathlib.Path(args.daemon).is_file():
        sys.exit(f"{args.daemon} is missing: cargo build --release --bin layerlensd")
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    size = "quick" if args.quick else "full"
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime before: {uptime_before}", file=sys.stderr)

    fast, _ = bpe_tokenizer()
    vocab = len(fast)
    chosen = args.rows.split(",")
    prompts = {
        name: (text_of_tokens(fast, ROWS[name][1], 0, False), text_of_tokens(fast, ROWS[name][2], 40, True)) for name in chosen
    }
    from captum.attr import TextTokenInput

    for name, (prompt, target) in prompts.items():
        print(f"{name}: prompt {prompt!r}\n  target {target!r}", file=sys.stderr)
        assert TextTokenInput(prompt, fast).n_itp_features == len(fast.encode(prompt))
    model = build_model(vocab, size)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    with torch.no_grad():
        ids = torch.tensor([fast.encode(text_of_tokens(fast, 64, 0, False) + text_of_tokens(fast, 16, 40, True))])
        # Untimed warm-up forwards, so that no Captum run pays for first calls. (On a shared
        # 2-core machine one forward of the full model took 0.4 s or 2.2 s depending on
        # what else ran: with another process on one core, two OpenMP threads mostly wait
        # for each other; the CPU seconds printed with each row show it.)
        for _ in range(12):
            model(input_ids=ids, use_cache=False)
        forwards = []
        for _ in range(3):
            start = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            forwards.append((time.perf_counter() - start) * 1e3)
        forward_ms = statistics.median(forwards)
    print(f"model: {SIZES[size]}, vocab {vocab}, {parameters / 1e6:.1f} M parameters; one eager forward of "
          f"{ids.shape[1]} tokens after 12 warm-up forwards: {forward_ms:.0f} ms (median of 3)", file=sys.stderr)

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        path = pathlib.Path(scratch) / "gpt2.pt2"
        start = time.perf_counter()
        export(model, path)
        print(f"exported in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        with running_daemon(pathlib.Path(args.daemon), scratch, threads) as daemon:
            client = layerlens.connect(f"http://{daemon.address}")
            handle = client.add_model(path, name=f"gpt2-{size}")
            info = handle.set_tokenizer(fast)
            assert info["vocab_size"] == vocab and info["model_vocab"] == vocab, info
            for name in chosen:
                method, prompt_tokens, target_tokens, n_samples, variants = ROWS[name]
                label = f"{method}{'' if n_samples is None else f' n={n_samples}'}, {prompt_tokens} -> {target_tokens} tokens"
                prompt, target = prompts[name]
                found, note = run_row(label, handle, daemon.pid, model, fast, method, prompt, target, args, n_samples, variants)
                rows += found
                notes.append(note)
            client.close()
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    print(f"\nGPT-2 {SIZES[size]} with random weights ({parameters / 1e6:.1f} M parameters), BPE vocab {vocab}; "
          f"release layerlensd (OMP_NUM_THREADS={threads}, --cache-bytes 0), Captum {__import__('captum').__version__} "
          f"with torch.set_num_threads({threads}); daemon: median of {args.rounds} after a warm-up; Captum: median of the runs shown.\n")
    print("| what | daemon s | Captum s | ratio daemon / Captum | max abs difference (of max abs Captum value) | "
          "allclose(atol=1e-4 x max) | Captum uncached vs one-pass | Captum runs |")
    print("|---|---:|---:|---:|---|---|---:|---:|")
    for row in rows:
        if row["captum"] is None:
            print(f"| {row['name']} | {row['daemon']:.2f} | fails: {row['failure']} | – | – | – | – | 0 |")
            continue
        spread = f"{row['spread']:.1e}" if row["spread"] is not None else "–"
        print(f"| {row['name']} | {row['daemon']:.2f} | {row['captum']:.2f} | {row['daemon'] / row['captum']:.3f} | "
              f"{row['diff']:.1e} (of {row['scale']:.1e}) | {'yes' if row['agree'] else 'no'} | {spread} | {row['runs']} |")
    print("\n| what | daemon CPU s / call | Captum CPU s / call |")
    print("|---|---:|---:|")
    for row in rows:
        if row["captum"] is not None:
            print(f"| {row['name']} | {row['daemon_cpu']:.1f} | {row['captum_cpu']:.1f} |")
    print()
    for note in notes:
        print(f"- {note['label']}: daemon {note['passes']} passes for {note['sequences']} sequences, {note['threads']} OS threads; "
              f"target-token probabilities within {note['probability_error']:.1e} (relative) of one eager forward of prompt + target; "
              f"daemon runs {', '.join(f'{value:.2f}' for value in note['daemon_times'])} s; "
              f"other processes used {note['foreign']:.0f} CPU s of the row's {note['elapsed']:.0f} s")
    print(f"- uptime before: {uptime_before}\n- uptime after:  {uptime_after}")


if __name__ == "__main__":
    main()
