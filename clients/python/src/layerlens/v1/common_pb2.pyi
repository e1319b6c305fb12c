from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[Dtype]
    DTYPE_FLOAT32: _ClassVar[Dtype]
    DTYPE_FLOAT64: _ClassVar[Dtype]
    DTYPE_INT64: _ClassVar[Dtype]
    DTYPE_INT32: _ClassVar[Dtype]
    DTYPE_UINT8: _ClassVar[Dtype]

class FigureFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIGURE_FORMAT_UNSPECIFIED: _ClassVar[FigureFormat]
    FIGURE_FORMAT_PNG: _ClassVar[FigureFormat]
    FIGURE_FORMAT_SVG: _ClassVar[FigureFormat]
    FIGURE_FORMAT_NONE: _ClassVar[FigureFormat]
DTYPE_UNSPECIFIED: Dtype
DTYPE_FLOAT32: Dtype
DTYPE_FLOAT64: Dtype
DTYPE_INT64: Dtype
DTYPE_INT32: Dtype
DTYPE_UINT8: Dtype
FIGURE_FORMAT_UNSPECIFIED: FigureFormat
FIGURE_FORMAT_PNG: FigureFormat
FIGURE_FORMAT_SVG: FigureFormat
FIGURE_FORMAT_NONE: FigureFormat

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: Dtype
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[Dtype, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Figure(_message.Message):
    __slots__ = ("mime", "data", "alt_text")
    MIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ALT_TEXT_FIELD_NUMBER: _ClassVar[int]
    mime: str
    data: bytes
    alt_text: str
    def __init__(self, mime: _Optional[str] = ..., data: _Optional[bytes] = ..., alt_text: _Optional[str] = ...) -> None: ...
