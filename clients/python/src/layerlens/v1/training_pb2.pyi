from layerlens.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OptimizerFigure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_FIGURE_UNSPECIFIED: _ClassVar[OptimizerFigure]
    OPTIMIZER_FIGURE_RATIOS: _ClassVar[OptimizerFigure]
    OPTIMIZER_FIGURE_STEP_HISTOGRAMS: _ClassVar[OptimizerFigure]

class LossKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOSS_KIND_UNSPECIFIED: _ClassVar[LossKind]
    LOSS_KIND_CROSS_ENTROPY: _ClassVar[LossKind]
    LOSS_KIND_MSE: _ClassVar[LossKind]
    LOSS_KIND_OUTPUT: _ClassVar[LossKind]

class RunFigureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_FIGURE_KIND_UNSPECIFIED: _ClassVar[RunFigureKind]
    RUN_FIGURE_KIND_RATIO_HEATMAP: _ClassVar[RunFigureKind]
    RUN_FIGURE_KIND_GRADIENT_FLOW: _ClassVar[RunFigureKind]
    RUN_FIGURE_KIND_LEARNING_RATE: _ClassVar[RunFigureKind]
    RUN_FIGURE_KIND_LOSS: _ClassVar[RunFigureKind]
    RUN_FIGURE_KIND_COMPARE: _ClassVar[RunFigureKind]
OPTIMIZER_FIGURE_UNSPECIFIED: OptimizerFigure
OPTIMIZER_FIGURE_RATIOS: OptimizerFigure
OPTIMIZER_FIGURE_STEP_HISTOGRAMS: OptimizerFigure
LOSS_KIND_UNSPECIFIED: LossKind
LOSS_KIND_CROSS_ENTROPY: LossKind
LOSS_KIND_MSE: LossKind
LOSS_KIND_OUTPUT: LossKind
RUN_FIGURE_KIND_UNSPECIFIED: RunFigureKind
RUN_FIGURE_KIND_RATIO_HEATMAP: RunFigureKind
RUN_FIGURE_KIND_GRADIENT_FLOW: RunFigureKind
RUN_FIGURE_KIND_LEARNING_RATE: RunFigureKind
RUN_FIGURE_KIND_LOSS: RunFigureKind
RUN_FIGURE_KIND_COMPARE: RunFigureKind

class CheckpointHeader(_message.Message):
    __slots__ = ("model", "step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    step: int
    def __init__(self, model: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class CheckpointUploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: CheckpointHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[CheckpointHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class AddCheckpointFromPathRequest(_message.Message):
    __slots__ = ("header", "path")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    header: CheckpointHeader
    path: str
    def __init__(self, header: _Optional[_Union[CheckpointHeader, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class CheckpointInfo(_message.Message):
    __slots__ = ("id", "model", "step", "optimizer", "format", "size_bytes", "created_unix", "parameters", "has_scheduler")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    HAS_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    step: int
    optimizer: str
    format: str
    size_bytes: int
    created_unix: int
    parameters: int
    has_scheduler: bool
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., step: _Optional[int] = ..., optimizer: _Optional[str] = ..., format: _Optional[str] = ..., size_bytes: _Optional[int] = ..., created_unix: _Optional[int] = ..., parameters: _Optional[int] = ..., has_scheduler: _Optional[bool] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointInfo]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[CheckpointInfo, _Mapping]]] = ...) -> None: ...

class ExplainOptimizerRequest(_message.Message):
    __slots__ = ("model", "checkpoint", "figure_format", "figure", "bins")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    model: str
    checkpoint: str
    figure_format: _common_pb2.FigureFormat
    figure: OptimizerFigure
    bins: int
    def __init__(self, model: _Optional[str] = ..., checkpoint: _Optional[str] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ..., figure: _Optional[_Union[OptimizerFigure, str]] = ..., bins: _Optional[int] = ...) -> None: ...

class Quantiles(_message.Message):
    __slots__ = ("p50", "p99", "max")
    P50_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    p50: float
    p99: float
    max: float
    def __init__(self, p50: _Optional[float] = ..., p99: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("edges", "counts")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class MomentStat(_message.Message):
    __slots__ = ("name", "norm", "max_abs", "nonfinite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_FIELD_NUMBER: _ClassVar[int]
    NONFINITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    norm: float
    max_abs: float
    nonfinite: int
    def __init__(self, name: _Optional[str] = ..., norm: _Optional[float] = ..., max_abs: _Optional[float] = ..., nonfinite: _Optional[int] = ...) -> None: ...

class ParameterUpdate(_message.Message):
    __slots__ = ("parameter", "layer", "shape", "group", "learning_rate", "weight_norm", "update_norm", "update_weight_ratio", "effective_lr", "step_size", "momentum_norm", "zero_second_moment_fraction", "weight_decay_share", "step_histogram", "moments", "has_state")
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_WEIGHT_RATIO_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LR_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_NORM_FIELD_NUMBER: _ClassVar[int]
    ZERO_SECOND_MOMENT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_SHARE_FIELD_NUMBER: _ClassVar[int]
    STEP_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    MOMENTS_FIELD_NUMBER: _ClassVar[int]
    HAS_STATE_FIELD_NUMBER: _ClassVar[int]
    parameter: str
    layer: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    group: int
    learning_rate: float
    weight_norm: float
    update_norm: float
    update_weight_ratio: float
    effective_lr: Quantiles
    step_size: Quantiles
    momentum_norm: float
    zero_second_moment_fraction: float
    weight_decay_share: float
    step_histogram: Histogram
    moments: _containers.RepeatedCompositeFieldContainer[MomentStat]
    has_state: bool
    def __init__(self, parameter: _Optional[str] = ..., layer: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., group: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_norm: _Optional[float] = ..., update_norm: _Optional[float] = ..., update_weight_ratio: _Optional[float] = ..., effective_lr: _Optional[_Union[Quantiles, _Mapping]] = ..., step_size: _Optional[_Union[Quantiles, _Mapping]] = ..., momentum_norm: _Optional[float] = ..., zero_second_moment_fraction: _Optional[float] = ..., weight_decay_share: _Optional[float] = ..., step_histogram: _Optional[_Union[Histogram, _Mapping]] = ..., moments: _Optional[_Iterable[_Union[MomentStat, _Mapping]]] = ..., has_state: _Optional[bool] = ...) -> None: ...

class LayerUpdate(_message.Message):
    __slots__ = ("layer", "weight_norm", "update_norm", "update_weight_ratio", "numel")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_WEIGHT_RATIO_FIELD_NUMBER: _ClassVar[int]
    NUMEL_FIELD_NUMBER: _ClassVar[int]
    layer: str
    weight_norm: float
    update_norm: float
    update_weight_ratio: float
    numel: int
    def __init__(self, layer: _Optional[str] = ..., weight_norm: _Optional[float] = ..., update_norm: _Optional[float] = ..., update_weight_ratio: _Optional[float] = ..., numel: _Optional[int] = ...) -> None: ...

class OptimizerFinding(_message.Message):
    __slots__ = ("severity", "layer", "parameter", "kind", "message", "value")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    severity: str
    layer: str
    parameter: str
    kind: str
    message: str
    value: float
    def __init__(self, severity: _Optional[str] = ..., layer: _Optional[str] = ..., parameter: _Optional[str] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ParamGroupInfo(_message.Message):
    __slots__ = ("index", "learning_rate", "options", "parameters")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    index: int
    learning_rate: float
    options: _containers.ScalarMap[str, str]
    parameters: int
    def __init__(self, index: _Optional[int] = ..., learning_rate: _Optional[float] = ..., options: _Optional[_Mapping[str, str]] = ..., parameters: _Optional[int] = ...) -> None: ...

class LearningRateSchedule(_message.Message):
    __slots__ = ("state", "last_epoch", "last_lr", "base_lr")
    class StateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_LR_FIELD_NUMBER: _ClassVar[int]
    BASE_LR_FIELD_NUMBER: _ClassVar[int]
    state: _containers.ScalarMap[str, str]
    last_epoch: int
    last_lr: _containers.RepeatedScalarFieldContainer[float]
    base_lr: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, state: _Optional[_Mapping[str, str]] = ..., last_epoch: _Optional[int] = ..., last_lr: _Optional[_Iterable[float]] = ..., base_lr: _Optional[_Iterable[float]] = ...) -> None: ...

class OptimizerReport(_message.Message):
    __slots__ = ("optimizer", "step", "rows", "layers", "findings", "param_groups", "schedule", "notes", "figure", "checkpoint")
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PARAM_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    optimizer: str
    step: int
    rows: _containers.RepeatedCompositeFieldContainer[ParameterUpdate]
    layers: _containers.RepeatedCompositeFieldContainer[LayerUpdate]
    findings: _containers.RepeatedCompositeFieldContainer[OptimizerFinding]
    param_groups: _containers.RepeatedCompositeFieldContainer[ParamGroupInfo]
    schedule: LearningRateSchedule
    notes: _containers.RepeatedScalarFieldContainer[str]
    figure: _common_pb2.Figure
    checkpoint: str
    def __init__(self, optimizer: _Optional[str] = ..., step: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[ParameterUpdate, _Mapping]]] = ..., layers: _Optional[_Iterable[_Union[LayerUpdate, _Mapping]]] = ..., findings: _Optional[_Iterable[_Union[OptimizerFinding, _Mapping]]] = ..., param_groups: _Optional[_Iterable[_Union[ParamGroupInfo, _Mapping]]] = ..., schedule: _Optional[_Union[LearningRateSchedule, _Mapping]] = ..., notes: _Optional[_Iterable[str]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class LandscapeRequest(_message.Message):
    __slots__ = ("model", "checkpoint", "inputs", "targets", "loss", "dims", "steps", "range", "seed", "trajectory", "return_directions", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    RETURN_DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    checkpoint: str
    inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    targets: _common_pb2.Tensor
    loss: LossKind
    dims: int
    steps: int
    range: float
    seed: int
    trajectory: _containers.RepeatedScalarFieldContainer[str]
    return_directions: bool
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., checkpoint: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., targets: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., loss: _Optional[_Union[LossKind, str]] = ..., dims: _Optional[int] = ..., steps: _Optional[int] = ..., range: _Optional[float] = ..., seed: _Optional[int] = ..., trajectory: _Optional[_Iterable[str]] = ..., return_directions: _Optional[bool] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class DirectionTensor(_message.Message):
    __slots__ = ("parameter", "direction", "values")
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    parameter: str
    direction: int
    values: _common_pb2.Tensor
    def __init__(self, parameter: _Optional[str] = ..., direction: _Optional[int] = ..., values: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class TrajectoryPoint(_message.Message):
    __slots__ = ("checkpoint", "step", "x", "y")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    step: int
    x: float
    y: float
    def __init__(self, checkpoint: _Optional[str] = ..., step: _Optional[int] = ..., x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class LandscapeResponse(_message.Message):
    __slots__ = ("dims", "steps", "range", "center_loss", "coordinates", "losses", "directions", "trajectory", "explained_variance", "notes", "figure", "passes")
    DIMS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    CENTER_LOSS_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    dims: int
    steps: int
    range: float
    center_loss: float
    coordinates: _containers.RepeatedScalarFieldContainer[float]
    losses: _containers.RepeatedScalarFieldContainer[float]
    directions: _containers.RepeatedCompositeFieldContainer[DirectionTensor]
    trajectory: _containers.RepeatedCompositeFieldContainer[TrajectoryPoint]
    explained_variance: _containers.RepeatedScalarFieldContainer[float]
    notes: _containers.RepeatedScalarFieldContainer[str]
    figure: _common_pb2.Figure
    passes: int
    def __init__(self, dims: _Optional[int] = ..., steps: _Optional[int] = ..., range: _Optional[float] = ..., center_loss: _Optional[float] = ..., coordinates: _Optional[_Iterable[float]] = ..., losses: _Optional[_Iterable[float]] = ..., directions: _Optional[_Iterable[_Union[DirectionTensor, _Mapping]]] = ..., trajectory: _Optional[_Iterable[_Union[TrajectoryPoint, _Mapping]]] = ..., explained_variance: _Optional[_Iterable[float]] = ..., notes: _Optional[_Iterable[str]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., passes: _Optional[int] = ...) -> None: ...

class WeightChangeRequest(_message.Message):
    __slots__ = ("model", "from_checkpoint", "to_checkpoint", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FROM_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TO_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    from_checkpoint: str
    to_checkpoint: str
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., from_checkpoint: _Optional[str] = ..., to_checkpoint: _Optional[str] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class WeightChange(_message.Message):
    __slots__ = ("name", "from_norm", "change_norm", "relative_change", "cosine")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_NORM_FIELD_NUMBER: _ClassVar[int]
    CHANGE_NORM_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    name: str
    from_norm: float
    change_norm: float
    relative_change: float
    cosine: float
    def __init__(self, name: _Optional[str] = ..., from_norm: _Optional[float] = ..., change_norm: _Optional[float] = ..., relative_change: _Optional[float] = ..., cosine: _Optional[float] = ...) -> None: ...

class WeightChangeResponse(_message.Message):
    __slots__ = ("parameters", "layers", "figure")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.RepeatedCompositeFieldContainer[WeightChange]
    layers: _containers.RepeatedCompositeFieldContainer[WeightChange]
    figure: _common_pb2.Figure
    def __init__(self, parameters: _Optional[_Iterable[_Union[WeightChange, _Mapping]]] = ..., layers: _Optional[_Iterable[_Union[WeightChange, _Mapping]]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...

class RunRecord(_message.Message):
    __slots__ = ("step", "layer", "grad_norm", "weight_norm", "update_norm", "update_weight_ratio", "step_size", "loss")
    STEP_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NORM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_WEIGHT_RATIO_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    step: int
    layer: str
    grad_norm: float
    weight_norm: float
    update_norm: float
    update_weight_ratio: float
    step_size: Quantiles
    loss: float
    def __init__(self, step: _Optional[int] = ..., layer: _Optional[str] = ..., grad_norm: _Optional[float] = ..., weight_norm: _Optional[float] = ..., update_norm: _Optional[float] = ..., update_weight_ratio: _Optional[float] = ..., step_size: _Optional[_Union[Quantiles, _Mapping]] = ..., loss: _Optional[float] = ...) -> None: ...

class RunStep(_message.Message):
    __slots__ = ("step", "loss", "learning_rates", "unix_time")
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATES_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    loss: float
    learning_rates: _containers.RepeatedScalarFieldContainer[float]
    unix_time: float
    def __init__(self, step: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rates: _Optional[_Iterable[float]] = ..., unix_time: _Optional[float] = ...) -> None: ...

class ReportRunRequest(_message.Message):
    __slots__ = ("run", "model", "steps", "records", "optimizer")
    RUN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    run: str
    model: str
    steps: _containers.RepeatedCompositeFieldContainer[RunStep]
    records: _containers.RepeatedCompositeFieldContainer[RunRecord]
    optimizer: str
    def __init__(self, run: _Optional[str] = ..., model: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[RunStep, _Mapping]]] = ..., records: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ..., optimizer: _Optional[str] = ...) -> None: ...

class ReportRunResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: int
    def __init__(self, records: _Optional[int] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("name", "model", "optimizer", "steps", "first_step", "last_step", "layers", "created_unix", "updated_unix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FIRST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    optimizer: str
    steps: int
    first_step: int
    last_step: int
    layers: _containers.RepeatedScalarFieldContainer[str]
    created_unix: int
    updated_unix: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., optimizer: _Optional[str] = ..., steps: _Optional[int] = ..., first_step: _Optional[int] = ..., last_step: _Optional[int] = ..., layers: _Optional[_Iterable[str]] = ..., created_unix: _Optional[int] = ..., updated_unix: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: str
    def __init__(self, run: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("info", "steps", "records")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    info: RunInfo
    steps: _containers.RepeatedCompositeFieldContainer[RunStep]
    records: _containers.RepeatedCompositeFieldContainer[RunRecord]
    def __init__(self, info: _Optional[_Union[RunInfo, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[RunStep, _Mapping]]] = ..., records: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ...) -> None: ...

class RunFigureRequest(_message.Message):
    __slots__ = ("runs", "kind", "figure_format")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedScalarFieldContainer[str]
    kind: RunFigureKind
    figure_format: _common_pb2.FigureFormat
    def __init__(self, runs: _Optional[_Iterable[str]] = ..., kind: _Optional[_Union[RunFigureKind, str]] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...
