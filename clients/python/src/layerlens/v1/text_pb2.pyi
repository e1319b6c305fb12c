from layerlens.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetTokenizerRequest(_message.Message):
    __slots__ = ("model", "tokenizer_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    tokenizer_json: bytes
    def __init__(self, model: _Optional[str] = ..., tokenizer_json: _Optional[bytes] = ...) -> None: ...

class TokenizerInfo(_message.Message):
    __slots__ = ("model", "vocab_size", "model_vocab", "id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VOCAB_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    vocab_size: int
    model_vocab: int
    id: str
    def __init__(self, model: _Optional[str] = ..., vocab_size: _Optional[int] = ..., model_vocab: _Optional[int] = ..., id: _Optional[str] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("model", "text", "add_special_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ADD_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    add_special_tokens: bool
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., add_special_tokens: _Optional[bool] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("ids", "tokens")
    IDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerateTextRequest(_message.Message):
    __slots__ = ("model", "text", "max_new_tokens", "sample", "seed", "temperature", "top_k", "eos_token_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    max_new_tokens: int
    sample: bool
    seed: int
    temperature: float
    top_k: int
    eos_token_id: int
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., sample: _Optional[bool] = ..., seed: _Optional[int] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., eos_token_id: _Optional[int] = ...) -> None: ...

class GeneratedToken(_message.Message):
    __slots__ = ("id", "token", "text", "log_prob")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LOG_PROB_FIELD_NUMBER: _ClassVar[int]
    id: int
    token: str
    text: str
    log_prob: float
    def __init__(self, id: _Optional[int] = ..., token: _Optional[str] = ..., text: _Optional[str] = ..., log_prob: _Optional[float] = ...) -> None: ...

class GeneratedText(_message.Message):
    __slots__ = ("text", "ids", "tokens", "prompt_ids")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    prompt_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, text: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ..., tokens: _Optional[_Iterable[str]] = ..., prompt_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateTextEvent(_message.Message):
    __slots__ = ("token", "result")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    token: GeneratedToken
    result: GeneratedText
    def __init__(self, token: _Optional[_Union[GeneratedToken, _Mapping]] = ..., result: _Optional[_Union[GeneratedText, _Mapping]] = ...) -> None: ...

class TextTemplate(_message.Message):
    __slots__ = ("template", "values", "names", "baselines")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    template: str
    values: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    baselines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., baselines: _Optional[_Iterable[str]] = ...) -> None: ...

class AttributeTextRequest(_message.Message):
    __slots__ = ("model", "text", "template", "target_text", "target_class", "method", "skip_tokens", "baseline_token", "attr_target", "n_samples", "seed", "max_new_tokens", "figure_format", "layer", "n_steps", "figure_kind")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_TEXT_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SKIP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ATTR_TARGET_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_KIND_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    template: TextTemplate
    target_text: str
    target_class: int
    method: str
    skip_tokens: _containers.RepeatedScalarFieldContainer[str]
    baseline_token: str
    attr_target: str
    n_samples: int
    seed: int
    max_new_tokens: int
    figure_format: _common_pb2.FigureFormat
    layer: str
    n_steps: int
    figure_kind: str
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., template: _Optional[_Union[TextTemplate, _Mapping]] = ..., target_text: _Optional[str] = ..., target_class: _Optional[int] = ..., method: _Optional[str] = ..., skip_tokens: _Optional[_Iterable[str]] = ..., baseline_token: _Optional[str] = ..., attr_target: _Optional[str] = ..., n_samples: _Optional[int] = ..., seed: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ..., layer: _Optional[str] = ..., n_steps: _Optional[int] = ..., figure_kind: _Optional[str] = ...) -> None: ...

class AttributeTextResponse(_message.Message):
    __slots__ = ("method", "input_tokens", "output_tokens", "seq_attr", "token_attr", "output_probs", "html", "figure", "passes", "sequences", "output_ids")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEQ_ATTR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ATTR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PROBS_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    method: str
    input_tokens: _containers.RepeatedScalarFieldContainer[str]
    output_tokens: _containers.RepeatedScalarFieldContainer[str]
    seq_attr: _containers.RepeatedScalarFieldContainer[float]
    token_attr: _containers.RepeatedScalarFieldContainer[float]
    output_probs: _containers.RepeatedScalarFieldContainer[float]
    html: str
    figure: _common_pb2.Figure
    passes: int
    sequences: int
    output_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, method: _Optional[str] = ..., input_tokens: _Optional[_Iterable[str]] = ..., output_tokens: _Optional[_Iterable[str]] = ..., seq_attr: _Optional[_Iterable[float]] = ..., token_attr: _Optional[_Iterable[float]] = ..., output_probs: _Optional[_Iterable[float]] = ..., html: _Optional[str] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., passes: _Optional[int] = ..., sequences: _Optional[int] = ..., output_ids: _Optional[_Iterable[int]] = ...) -> None: ...
