"""Small language models for the text tests, built the same way every time: a byte-level
BPE tokenizer trained on a fixed corpus with the `tokenizers` library, a GPT-2 causal LM
and a BERT sequence classifier from `transformers` configs with seeded random weights
(nothing is downloaded), and their torch.export archives (dynamic batch and sequence
length, the sequence bounded by the model's context).
"""

import torch

CORPUS = [
    "Dave lives in Palm Coast, FL and is a lawyer. His personal interests include golf and reading.",
    "The movie was great and the actors were wonderful, a film to watch again.",
    "The movie was terrible, boring and far too long; I would not watch it again.",
    "She plays tennis on weekends and reads books about history in the evening.",
    "Once upon a time there was a small village by the sea where fishermen lived.",
    "The weather today is sunny with a light breeze from the west.",
] * 4
CONTEXT = 64


class LogitsOnly(torch.nn.Module):
    """A transformers model that returns its logits tensor only (what export and the daemon take)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        if self.model.config.model_type == "gpt2":
            return self.model(input_ids=input_ids, use_cache=False).logits
        return self.model(input_ids=input_ids).logits


def bpe_tokenizer(vocab_size=300):
    """A byte-level BPE tokenizer (GPT-2 style, `Ġ` marks a space) trained on CORPUS, as a
    transformers PreTrainedTokenizerFast for Captum and as tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    return fast, tokenizer.to_str()


def gpt2(vocab_size, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1, pad_token_id=1)
    return GPT2LMHeadModel(config).eval()


def bert_classifier(vocab_size, seed=1):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=CONTEXT, num_labels=3)
    return BertForSequenceClassification(config).eval()


def export(model, path, example_length=8):
    """Saves LogitsOnly(model) as a torch.export archive with a dynamic batch and sequence."""
    wrapped = LogitsOnly(model).eval()
    example = torch.randint(2, 50, (2, example_length))
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=CONTEXT)
    program = torch.export.export(wrapped, (example,), dynamic_shapes=({0: batch, 1: sequence},), strict=False)
    torch.export.save(program, str(path))
    return wrapped
