//! Conversions between wire types (`proto::…`) and engine/store types, by hand, at
//! the edge (like rust-analyzer's to_proto/from_proto). The proto crate cannot hold
//! them: it must not depend on the engine, which links libtorch.

use crate::error::{ApiError, ApiResult};
use crate::store::ModelRecord;
use layerlens_engine::HostTensor;
use layerlens_proto as proto;

pub fn model_info(record: &ModelRecord, resident: bool) -> proto::ModelInfo {
    proto::ModelInfo {
        id: record.id.clone(),
        names: record.names.clone(),
        size_bytes: record.size_bytes,
        resident,
        format: record.format.clone(),
        input_shape: record.input_shape.clone(),
        created_unix: record.created_unix,
    }
}

/// The request's input tensor; float32 only for now.
pub fn input_tensor(tensor: Option<&proto::Tensor>) -> ApiResult<HostTensor> {
    let tensor = tensor.ok_or_else(|| ApiError::bad_input("the request has no input tensor"))?;
    let values = tensor.to_f32().map_err(|error| ApiError::bad_input(format!("input: {error}")))?;
    Ok(HostTensor { shape: tensor.shape.clone(), values })
}

pub fn tensor(host: &HostTensor) -> proto::Tensor {
    proto::Tensor::from_f32(&host.shape, &host.values)
}

pub fn figure(figure: layerlens_render::Figure) -> proto::Figure {
    proto::Figure { mime: figure.mime, data: figure.data, alt_text: figure.alt_text }
}

/// PNG unless the client asked for SVG; `None` when it asked for no figure.
pub fn figure_format(format: i32) -> Option<layerlens_render::Format> {
    match proto::FigureFormat::try_from(format).unwrap_or(proto::FigureFormat::Unspecified) {
        proto::FigureFormat::None => None,
        proto::FigureFormat::Svg => Some(layerlens_render::Format::Svg),
        proto::FigureFormat::Png | proto::FigureFormat::Unspecified => Some(layerlens_render::Format::Png),
    }
}
