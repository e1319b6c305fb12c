from layerlens.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectiveTerm(_message.Message):
    __slots__ = ("term", "weight", "direction")
    TERM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    term: str
    weight: float
    direction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, term: _Optional[str] = ..., weight: _Optional[float] = ..., direction: _Optional[_Iterable[float]] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ("terms",)
    TERMS_FIELD_NUMBER: _ClassVar[int]
    terms: _containers.RepeatedCompositeFieldContainer[ObjectiveTerm]
    def __init__(self, terms: _Optional[_Iterable[_Union[ObjectiveTerm, _Mapping]]] = ...) -> None: ...

class VisualizeRequest(_message.Message):
    __slots__ = ("model", "objectives", "images_per_objective", "input_shape", "parameterization", "decorrelate", "steps", "learning_rate", "seed", "transforms", "l2", "total_variation", "blur", "diversity", "diversity_layer", "mean", "std", "low", "high", "progress_every", "image_every", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERIZATION_FIELD_NUMBER: _ClassVar[int]
    DECORRELATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VARIATION_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_LAYER_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVERY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_EVERY_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    objectives: _containers.RepeatedCompositeFieldContainer[Objective]
    images_per_objective: int
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    parameterization: str
    decorrelate: bool
    steps: int
    learning_rate: float
    seed: int
    transforms: str
    l2: float
    total_variation: float
    blur: float
    diversity: float
    diversity_layer: str
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    low: float
    high: float
    progress_every: int
    image_every: int
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., objectives: _Optional[_Iterable[_Union[Objective, _Mapping]]] = ..., images_per_objective: _Optional[int] = ..., input_shape: _Optional[_Iterable[int]] = ..., parameterization: _Optional[str] = ..., decorrelate: _Optional[bool] = ..., steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., seed: _Optional[int] = ..., transforms: _Optional[str] = ..., l2: _Optional[float] = ..., total_variation: _Optional[float] = ..., blur: _Optional[float] = ..., diversity: _Optional[float] = ..., diversity_layer: _Optional[str] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., low: _Optional[float] = ..., high: _Optional[float] = ..., progress_every: _Optional[int] = ..., image_every: _Optional[int] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class VisualizeProgress(_message.Message):
    __slots__ = ("step", "steps", "objective", "figure")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    step: int
    steps: int
    objective: _containers.RepeatedScalarFieldContainer[float]
    figure: _common_pb2.Figure
    def __init__(self, step: _Optional[int] = ..., steps: _Optional[int] = ..., objective: _Optional[_Iterable[float]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...

class VisualizeResult(_message.Message):
    __slots__ = ("model_id", "images", "objective", "steps", "predicted_class", "predicted_probability", "figure", "labels")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    images: _common_pb2.Tensor
    objective: _containers.RepeatedScalarFieldContainer[float]
    steps: int
    predicted_class: _containers.RepeatedScalarFieldContainer[int]
    predicted_probability: _containers.RepeatedScalarFieldContainer[float]
    figure: _common_pb2.Figure
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., images: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., objective: _Optional[_Iterable[float]] = ..., steps: _Optional[int] = ..., predicted_class: _Optional[_Iterable[int]] = ..., predicted_probability: _Optional[_Iterable[float]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class VisualizeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: VisualizeProgress
    result: VisualizeResult
    def __init__(self, progress: _Optional[_Union[VisualizeProgress, _Mapping]] = ..., result: _Optional[_Union[VisualizeResult, _Mapping]] = ...) -> None: ...

class CounterfactualRequest(_message.Message):
    __slots__ = ("model", "input", "target", "norm", "steps", "step_size", "low", "high", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _common_pb2.Tensor
    target: _containers.RepeatedScalarFieldContainer[int]
    norm: str
    steps: int
    step_size: float
    low: float
    high: float
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., target: _Optional[_Iterable[int]] = ..., norm: _Optional[str] = ..., steps: _Optional[int] = ..., step_size: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class CounterfactualProgress(_message.Message):
    __slots__ = ("step", "steps", "flipped")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FLIPPED_FIELD_NUMBER: _ClassVar[int]
    step: int
    steps: int
    flipped: int
    def __init__(self, step: _Optional[int] = ..., steps: _Optional[int] = ..., flipped: _Optional[int] = ...) -> None: ...

class CounterfactualRow(_message.Message):
    __slots__ = ("flipped", "distance", "l2_distance", "steps", "original_class", "final_class", "probability_path", "classes")
    FLIPPED_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    L2_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_CLASS_FIELD_NUMBER: _ClassVar[int]
    FINAL_CLASS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_PATH_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    flipped: bool
    distance: float
    l2_distance: float
    steps: int
    original_class: int
    final_class: int
    probability_path: _containers.RepeatedScalarFieldContainer[float]
    classes: int
    def __init__(self, flipped: _Optional[bool] = ..., distance: _Optional[float] = ..., l2_distance: _Optional[float] = ..., steps: _Optional[int] = ..., original_class: _Optional[int] = ..., final_class: _Optional[int] = ..., probability_path: _Optional[_Iterable[float]] = ..., classes: _Optional[int] = ...) -> None: ...

class CounterfactualResult(_message.Message):
    __slots__ = ("model_id", "counterfactual", "rows", "figure")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    counterfactual: _common_pb2.Tensor
    rows: _containers.RepeatedCompositeFieldContainer[CounterfactualRow]
    figure: _common_pb2.Figure
    def __init__(self, model_id: _Optional[str] = ..., counterfactual: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[CounterfactualRow, _Mapping]]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...

class CounterfactualEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: CounterfactualProgress
    result: CounterfactualResult
    def __init__(self, progress: _Optional[_Union[CounterfactualProgress, _Mapping]] = ..., result: _Optional[_Union[CounterfactualResult, _Mapping]] = ...) -> None: ...

class TraverseRequest(_message.Message):
    __slots__ = ("model", "z", "dims", "range", "steps", "z_end", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    Z_END_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    z: _common_pb2.Tensor
    dims: _containers.RepeatedScalarFieldContainer[int]
    range: float
    steps: int
    z_end: _common_pb2.Tensor
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., z: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., dims: _Optional[_Iterable[int]] = ..., range: _Optional[float] = ..., steps: _Optional[int] = ..., z_end: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class TraverseResponse(_message.Message):
    __slots__ = ("model_id", "images", "latents", "rows", "columns", "figure")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    images: _common_pb2.Tensor
    latents: _common_pb2.Tensor
    rows: int
    columns: int
    figure: _common_pb2.Figure
    def __init__(self, model_id: _Optional[str] = ..., images: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., latents: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...
