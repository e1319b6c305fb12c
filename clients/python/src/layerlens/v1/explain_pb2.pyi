from layerlens.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SummaryRequest(_message.Message):
    __slots__ = ("model", "input_shape", "depth", "figure_format", "input_dtype", "extra_inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    depth: int
    figure_format: _common_pb2.FigureFormat
    input_dtype: _common_pb2.Dtype
    extra_inputs: _containers.RepeatedCompositeFieldContainer[SampleInput]
    def __init__(self, model: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., depth: _Optional[int] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ..., input_dtype: _Optional[_Union[_common_pb2.Dtype, str]] = ..., extra_inputs: _Optional[_Iterable[_Union[SampleInput, _Mapping]]] = ...) -> None: ...

class SampleInput(_message.Message):
    __slots__ = ("shape", "dtype")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: _common_pb2.Dtype
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[_common_pb2.Dtype, str]] = ...) -> None: ...

class SummaryRow(_message.Message):
    __slots__ = ("path", "type_name", "depth", "num_params", "trainable_params", "own_params", "output_shapes", "mult_adds", "input_shapes", "kernel_size", "call_index", "call_site", "is_leaf", "params_percent", "attributes", "num_buffers", "own_buffers")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OWN_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    MULT_ADDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    CALL_INDEX_FIELD_NUMBER: _ClassVar[int]
    CALL_SITE_FIELD_NUMBER: _ClassVar[int]
    IS_LEAF_FIELD_NUMBER: _ClassVar[int]
    PARAMS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NUM_BUFFERS_FIELD_NUMBER: _ClassVar[int]
    OWN_BUFFERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    type_name: str
    depth: int
    num_params: int
    trainable_params: int
    own_params: int
    output_shapes: _containers.RepeatedCompositeFieldContainer[Shape]
    mult_adds: int
    input_shapes: _containers.RepeatedCompositeFieldContainer[Shape]
    kernel_size: _containers.RepeatedScalarFieldContainer[int]
    call_index: int
    call_site: str
    is_leaf: bool
    params_percent: float
    attributes: _containers.ScalarMap[str, str]
    num_buffers: int
    own_buffers: int
    def __init__(self, path: _Optional[str] = ..., type_name: _Optional[str] = ..., depth: _Optional[int] = ..., num_params: _Optional[int] = ..., trainable_params: _Optional[int] = ..., own_params: _Optional[int] = ..., output_shapes: _Optional[_Iterable[_Union[Shape, _Mapping]]] = ..., mult_adds: _Optional[int] = ..., input_shapes: _Optional[_Iterable[_Union[Shape, _Mapping]]] = ..., kernel_size: _Optional[_Iterable[int]] = ..., call_index: _Optional[int] = ..., call_site: _Optional[str] = ..., is_leaf: _Optional[bool] = ..., params_percent: _Optional[float] = ..., attributes: _Optional[_Mapping[str, str]] = ..., num_buffers: _Optional[int] = ..., own_buffers: _Optional[int] = ...) -> None: ...

class Shape(_message.Message):
    __slots__ = ("dims",)
    DIMS_FIELD_NUMBER: _ClassVar[int]
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dims: _Optional[_Iterable[int]] = ...) -> None: ...

class SummaryResponse(_message.Message):
    __slots__ = ("model_id", "rows", "total_params", "trainable_params", "total_mult_adds", "figure", "input_bytes", "forward_backward_bytes", "params_bytes", "total_bytes", "notes", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MULT_ADDS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FORWARD_BACKWARD_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    rows: _containers.RepeatedCompositeFieldContainer[SummaryRow]
    total_params: int
    trainable_params: int
    total_mult_adds: int
    figure: _common_pb2.Figure
    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    total_bytes: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[SummaryRow, _Mapping]]] = ..., total_params: _Optional[int] = ..., trainable_params: _Optional[int] = ..., total_mult_adds: _Optional[int] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., input_bytes: _Optional[int] = ..., forward_backward_bytes: _Optional[int] = ..., params_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., cached: _Optional[bool] = ...) -> None: ...

class AttributeRequest(_message.Message):
    __slots__ = ("model", "input", "method", "target", "params", "figure_format", "extra_inputs", "tensor_params", "targets", "layer", "figure_options")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TensorParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FIGURE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _common_pb2.Tensor
    method: str
    target: int
    params: _containers.ScalarMap[str, str]
    figure_format: _common_pb2.FigureFormat
    extra_inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    tensor_params: _containers.MessageMap[str, _common_pb2.Tensor]
    targets: _containers.RepeatedScalarFieldContainer[int]
    layer: str
    figure_options: FigureOptions
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., method: _Optional[str] = ..., target: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ..., extra_inputs: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., tensor_params: _Optional[_Mapping[str, _common_pb2.Tensor]] = ..., targets: _Optional[_Iterable[int]] = ..., layer: _Optional[str] = ..., figure_options: _Optional[_Union[FigureOptions, _Mapping]] = ...) -> None: ...

class FigureOptions(_message.Message):
    __slots__ = ("method", "sign", "outlier_percent")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SIGN_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_PERCENT_FIELD_NUMBER: _ClassVar[int]
    method: str
    sign: str
    outlier_percent: float
    def __init__(self, method: _Optional[str] = ..., sign: _Optional[str] = ..., outlier_percent: _Optional[float] = ...) -> None: ...

class AttributeResponse(_message.Message):
    __slots__ = ("model_id", "method", "targets", "attribution", "convergence_delta", "figure", "output", "extra_attributions", "n_steps", "convergence_deltas", "rows_evaluated", "passes", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_DELTA_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_DELTAS_FIELD_NUMBER: _ClassVar[int]
    ROWS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    method: str
    targets: _containers.RepeatedScalarFieldContainer[int]
    attribution: _common_pb2.Tensor
    convergence_delta: float
    figure: _common_pb2.Figure
    output: _common_pb2.Tensor
    extra_attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    n_steps: int
    convergence_deltas: _containers.RepeatedScalarFieldContainer[float]
    rows_evaluated: int
    passes: int
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., method: _Optional[str] = ..., targets: _Optional[_Iterable[int]] = ..., attribution: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., convergence_delta: _Optional[float] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., extra_attributions: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., n_steps: _Optional[int] = ..., convergence_deltas: _Optional[_Iterable[float]] = ..., rows_evaluated: _Optional[int] = ..., passes: _Optional[int] = ..., cached: _Optional[bool] = ...) -> None: ...

class AttributeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: AttributeProgress
    result: AttributeResponse
    def __init__(self, progress: _Optional[_Union[AttributeProgress, _Mapping]] = ..., result: _Optional[_Union[AttributeResponse, _Mapping]] = ...) -> None: ...

class AttributeProgress(_message.Message):
    __slots__ = ("passes_done", "passes_total", "rows_done", "rows_total", "phase", "elapsed_seconds")
    PASSES_DONE_FIELD_NUMBER: _ClassVar[int]
    PASSES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_DONE_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    passes_done: int
    passes_total: int
    rows_done: int
    rows_total: int
    phase: str
    elapsed_seconds: float
    def __init__(self, passes_done: _Optional[int] = ..., passes_total: _Optional[int] = ..., rows_done: _Optional[int] = ..., rows_total: _Optional[int] = ..., phase: _Optional[str] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class MethodSpec(_message.Message):
    __slots__ = ("method", "params", "tensor_params", "layer")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TensorParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_PARAMS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    method: str
    params: _containers.ScalarMap[str, str]
    tensor_params: _containers.MessageMap[str, _common_pb2.Tensor]
    layer: str
    def __init__(self, method: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., tensor_params: _Optional[_Mapping[str, _common_pb2.Tensor]] = ..., layer: _Optional[str] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("base", "methods")
    BASE_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    base: AttributeRequest
    methods: _containers.RepeatedCompositeFieldContainer[MethodSpec]
    def __init__(self, base: _Optional[_Union[AttributeRequest, _Mapping]] = ..., methods: _Optional[_Iterable[_Union[MethodSpec, _Mapping]]] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("attributions", "figure")
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    attributions: _containers.RepeatedCompositeFieldContainer[AttributeResponse]
    figure: _common_pb2.Figure
    def __init__(self, attributions: _Optional[_Iterable[_Union[AttributeResponse, _Mapping]]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("attribution", "metrics", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    attribution: AttributeRequest
    metrics: _containers.RepeatedScalarFieldContainer[str]
    params: _containers.ScalarMap[str, str]
    def __init__(self, attribution: _Optional[_Union[AttributeRequest, _Mapping]] = ..., metrics: _Optional[_Iterable[str]] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("attribution", "infidelity", "sensitivity_max")
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    INFIDELITY_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_MAX_FIELD_NUMBER: _ClassVar[int]
    attribution: AttributeResponse
    infidelity: _containers.RepeatedScalarFieldContainer[float]
    sensitivity_max: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, attribution: _Optional[_Union[AttributeResponse, _Mapping]] = ..., infidelity: _Optional[_Iterable[float]] = ..., sensitivity_max: _Optional[_Iterable[float]] = ...) -> None: ...

class SanityCheckRequest(_message.Message):
    __slots__ = ("attribution", "seed", "signed")
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    attribution: AttributeRequest
    seed: int
    signed: bool
    def __init__(self, attribution: _Optional[_Union[AttributeRequest, _Mapping]] = ..., seed: _Optional[int] = ..., signed: _Optional[bool] = ...) -> None: ...

class SanityCheckStep(_message.Message):
    __slots__ = ("layer", "spearman", "spearman_per_row")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    layer: str
    spearman: float
    spearman_per_row: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer: _Optional[str] = ..., spearman: _Optional[float] = ..., spearman_per_row: _Optional[_Iterable[float]] = ...) -> None: ...

class SanityCheckResponse(_message.Message):
    __slots__ = ("attribution", "steps", "figure")
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    attribution: AttributeResponse
    steps: _containers.RepeatedCompositeFieldContainer[SanityCheckStep]
    figure: _common_pb2.Figure
    def __init__(self, attribution: _Optional[_Union[AttributeResponse, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[SanityCheckStep, _Mapping]]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ...) -> None: ...

class GraphRequest(_message.Message):
    __slots__ = ("model", "input_shape", "input_dtype", "depth", "collapse_repeats", "figure_format", "extra_inputs", "view")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_REPEATS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    input_dtype: _common_pb2.Dtype
    depth: int
    collapse_repeats: bool
    figure_format: _common_pb2.FigureFormat
    extra_inputs: _containers.RepeatedCompositeFieldContainer[SampleInput]
    view: GraphView
    def __init__(self, model: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., input_dtype: _Optional[_Union[_common_pb2.Dtype, str]] = ..., depth: _Optional[int] = ..., collapse_repeats: _Optional[bool] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ..., extra_inputs: _Optional[_Iterable[_Union[SampleInput, _Mapping]]] = ..., view: _Optional[_Union[GraphView, _Mapping]] = ...) -> None: ...

class GraphView(_message.Message):
    __slots__ = ("open", "unfold_repeats")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    UNFOLD_REPEATS_FIELD_NUMBER: _ClassVar[int]
    open: _containers.RepeatedScalarFieldContainer[str]
    unfold_repeats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, open: _Optional[_Iterable[str]] = ..., unfold_repeats: _Optional[_Iterable[str]] = ...) -> None: ...

class GraphLayout(_message.Message):
    __slots__ = ("width", "height", "boxes", "frames", "arrows", "alt_text")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ARROWS_FIELD_NUMBER: _ClassVar[int]
    ALT_TEXT_FIELD_NUMBER: _ClassVar[int]
    width: float
    height: float
    boxes: _containers.RepeatedCompositeFieldContainer[GraphBox]
    frames: _containers.RepeatedCompositeFieldContainer[GraphFrame]
    arrows: _containers.RepeatedCompositeFieldContainer[GraphArrow]
    alt_text: str
    def __init__(self, width: _Optional[float] = ..., height: _Optional[float] = ..., boxes: _Optional[_Iterable[_Union[GraphBox, _Mapping]]] = ..., frames: _Optional[_Iterable[_Union[GraphFrame, _Mapping]]] = ..., arrows: _Optional[_Iterable[_Union[GraphArrow, _Mapping]]] = ..., alt_text: _Optional[str] = ...) -> None: ...

class GraphBox(_message.Message):
    __slots__ = ("role", "title", "lines", "path", "node_ids", "repeats", "x", "y", "width", "height")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    role: str
    title: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    path: str
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    repeats: int
    x: float
    y: float
    width: float
    height: float
    def __init__(self, role: _Optional[str] = ..., title: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ..., path: _Optional[str] = ..., node_ids: _Optional[_Iterable[int]] = ..., repeats: _Optional[int] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class GraphFrame(_message.Message):
    __slots__ = ("path", "label", "depth", "repeats", "x", "y", "width", "height", "label_x")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LABEL_X_FIELD_NUMBER: _ClassVar[int]
    path: str
    label: str
    depth: int
    repeats: int
    x: float
    y: float
    width: float
    height: float
    label_x: float
    def __init__(self, path: _Optional[str] = ..., label: _Optional[str] = ..., depth: _Optional[int] = ..., repeats: _Optional[int] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., label_x: _Optional[float] = ...) -> None: ...

class GraphArrow(_message.Message):
    __slots__ = ("to", "points", "shape")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    to: int
    points: _containers.RepeatedScalarFieldContainer[float]
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, to: _Optional[int] = ..., points: _Optional[_Iterable[float]] = ..., shape: _Optional[_Iterable[int]] = ..., **kwargs) -> None: ...

class GraphNode(_message.Message):
    __slots__ = ("id", "op", "module_path", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    MODULE_PATH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: int
    op: str
    module_path: str
    source: str
    def __init__(self, id: _Optional[int] = ..., op: _Optional[str] = ..., module_path: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class GraphEdge(_message.Message):
    __slots__ = ("to", "shape")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    to: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, to: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., **kwargs) -> None: ...

class GraphResponse(_message.Message):
    __slots__ = ("model_id", "nodes", "edges", "figure", "cached", "layout")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNode]
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    figure: _common_pb2.Figure
    cached: bool
    layout: GraphLayout
    def __init__(self, model_id: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[GraphNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., figure: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., cached: _Optional[bool] = ..., layout: _Optional[_Union[GraphLayout, _Mapping]] = ...) -> None: ...

class TensorStats(_message.Message):
    __slots__ = ("count", "mean", "std", "min", "max", "l2_norm", "zero_fraction", "nan_count", "inf_count", "histogram_edges", "histogram_counts")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    L2_NORM_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    INF_COUNT_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_EDGES_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_COUNTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    std: float
    min: float
    max: float
    l2_norm: float
    zero_fraction: float
    nan_count: int
    inf_count: int
    histogram_edges: _containers.RepeatedScalarFieldContainer[float]
    histogram_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., l2_norm: _Optional[float] = ..., zero_fraction: _Optional[float] = ..., nan_count: _Optional[int] = ..., inf_count: _Optional[int] = ..., histogram_edges: _Optional[_Iterable[float]] = ..., histogram_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class ParametersRequest(_message.Message):
    __slots__ = ("model", "bins", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    bins: int
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., bins: _Optional[int] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class ParameterStats(_message.Message):
    __slots__ = ("name", "module_path", "shape", "dtype", "requires_grad", "stats")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_PATH_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    module_path: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    requires_grad: bool
    stats: TensorStats
    def __init__(self, name: _Optional[str] = ..., module_path: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., requires_grad: _Optional[bool] = ..., stats: _Optional[_Union[TensorStats, _Mapping]] = ...) -> None: ...

class ParametersResponse(_message.Message):
    __slots__ = ("model_id", "parameters", "histograms", "filters", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterStats]
    histograms: _common_pb2.Figure
    filters: _common_pb2.Figure
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterStats, _Mapping]]] = ..., histograms: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., filters: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class ActivationsRequest(_message.Message):
    __slots__ = ("model", "input", "extra_inputs", "bins", "figure_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    FIGURE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _common_pb2.Tensor
    extra_inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    bins: int
    figure_format: _common_pb2.FigureFormat
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., extra_inputs: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., bins: _Optional[int] = ..., figure_format: _Optional[_Union[_common_pb2.FigureFormat, str]] = ...) -> None: ...

class LayerStats(_message.Message):
    __slots__ = ("path", "type_name", "call_index", "call_site", "shape", "stats", "nonpositive_fraction", "saturated_fraction", "dead_channels", "channels")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    CALL_INDEX_FIELD_NUMBER: _ClassVar[int]
    CALL_SITE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    NONPOSITIVE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SATURATED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DEAD_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    path: str
    type_name: str
    call_index: int
    call_site: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    stats: TensorStats
    nonpositive_fraction: float
    saturated_fraction: float
    dead_channels: int
    channels: int
    def __init__(self, path: _Optional[str] = ..., type_name: _Optional[str] = ..., call_index: _Optional[int] = ..., call_site: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., stats: _Optional[_Union[TensorStats, _Mapping]] = ..., nonpositive_fraction: _Optional[float] = ..., saturated_fraction: _Optional[float] = ..., dead_channels: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("severity", "kind", "path", "call_site", "message")
    class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SEVERITY_UNSPECIFIED: _ClassVar[Anomaly.Severity]
        SEVERITY_INFO: _ClassVar[Anomaly.Severity]
        SEVERITY_WARNING: _ClassVar[Anomaly.Severity]
        SEVERITY_ERROR: _ClassVar[Anomaly.Severity]
    SEVERITY_UNSPECIFIED: Anomaly.Severity
    SEVERITY_INFO: Anomaly.Severity
    SEVERITY_WARNING: Anomaly.Severity
    SEVERITY_ERROR: Anomaly.Severity
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CALL_SITE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    severity: Anomaly.Severity
    kind: str
    path: str
    call_site: str
    message: str
    def __init__(self, severity: _Optional[_Union[Anomaly.Severity, str]] = ..., kind: _Optional[str] = ..., path: _Optional[str] = ..., call_site: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ActivationsResponse(_message.Message):
    __slots__ = ("model_id", "layers", "anomalies", "chart", "histograms", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerStats]
    anomalies: _containers.RepeatedCompositeFieldContainer[Anomaly]
    chart: _common_pb2.Figure
    histograms: _common_pb2.Figure
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerStats, _Mapping]]] = ..., anomalies: _Optional[_Iterable[_Union[Anomaly, _Mapping]]] = ..., chart: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., histograms: _Optional[_Union[_common_pb2.Figure, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "input", "extra_inputs", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _common_pb2.Tensor
    extra_inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    top_k: int
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., extra_inputs: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., top_k: _Optional[int] = ...) -> None: ...

class TopClass(_message.Message):
    __slots__ = ("class_index", "logit", "probability")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    logit: float
    probability: float
    def __init__(self, class_index: _Optional[int] = ..., logit: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class RowPrediction(_message.Message):
    __slots__ = ("top",)
    TOP_FIELD_NUMBER: _ClassVar[int]
    top: _containers.RepeatedCompositeFieldContainer[TopClass]
    def __init__(self, top: _Optional[_Iterable[_Union[TopClass, _Mapping]]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model_id", "output", "rows", "cached")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    output: _common_pb2.Tensor
    rows: _containers.RepeatedCompositeFieldContainer[RowPrediction]
    cached: bool
    def __init__(self, model_id: _Optional[str] = ..., output: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[RowPrediction, _Mapping]]] = ..., cached: _Optional[bool] = ...) -> None: ...

class MethodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttributionMethod(_message.Message):
    __slots__ = ("name", "summary", "options", "layer", "sampling", "batchable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    BATCHABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    options: _containers.RepeatedScalarFieldContainer[str]
    layer: bool
    sampling: bool
    batchable: bool
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., layer: _Optional[bool] = ..., sampling: _Optional[bool] = ..., batchable: _Optional[bool] = ...) -> None: ...

class MethodsResponse(_message.Message):
    __slots__ = ("methods",)
    METHODS_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedCompositeFieldContainer[AttributionMethod]
    def __init__(self, methods: _Optional[_Iterable[_Union[AttributionMethod, _Mapping]]] = ...) -> None: ...
