//! The layerlens wire API (`layerlens.v1`): the code prost and tonic generate
//! from `proto/layerlens/v1/*.proto`, the encoded descriptor set that server
//! reflection serves, and hand-written helpers for the shared `Tensor` message.
//!
//! Clients depend on this crate and nothing heavier; it links no libtorch.

pub mod v1 {
    // Generated code: prost's oneofs hold messages by value, as the wire does.
    #![allow(clippy::large_enum_variant)]
    tonic::include_proto!("layerlens.v1");
}

pub use v1::*;

/// Encoded `FileDescriptorSet` of every layerlens proto file, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/layerlens_descriptor.bin"));

/// A shape for messages, shortened when long: `[1, 3, 224, 224]`, or
/// `[1, 1, 1, 1, 1, 1, 1, 1, ... (1000 dimensions)]`. A request's shape is echoed in
/// errors, and a whole 1000-dimension shape would overflow a client's metadata limit.
pub fn short_shape(shape: &[i64]) -> String {
    const SHOWN: usize = 8;
    let dims: Vec<String> = shape.iter().take(SHOWN).map(i64::to_string).collect();
    if shape.len() > SHOWN {
        format!("[{}, ... ({} dimensions)]", dims.join(", "), shape.len())
    } else {
        format!("[{}]", dims.join(", "))
    }
}

/// Why a wire `Tensor` could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("tensor shape {} has a negative dimension", short_shape(shape))]
    NegativeDimension { shape: Vec<i64> },
    #[error("tensor shape {} has more elements than this machine can address", short_shape(shape))]
    TooLarge { shape: Vec<i64> },
    #[error("tensor dtype {found} is not supported here; expected {expected}")]
    WrongDtype { found: String, expected: &'static str },
    #[error("tensor of shape {} and dtype {dtype} needs {expected} bytes but carries {found}", short_shape(shape))]
    WrongByteLength { shape: Vec<i64>, dtype: String, expected: usize, found: usize },
}

impl Dtype {
    /// Bytes per element; `None` for `DTYPE_UNSPECIFIED`.
    pub fn element_size(self) -> Option<usize> {
        match self {
            Dtype::Unspecified => None,
            Dtype::Float32 | Dtype::Int32 => Some(4),
            Dtype::Float64 | Dtype::Int64 => Some(8),
            Dtype::Uint8 => Some(1),
        }
    }

    /// Lower-case name as users write it (`float32`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Unspecified => "unspecified",
            Dtype::Float32 => "float32",
            Dtype::Float64 => "float64",
            Dtype::Int64 => "int64",
            Dtype::Int32 => "int32",
            Dtype::Uint8 => "uint8",
        }
    }
}

impl Tensor {
    /// A float32 tensor from row-major values.
    pub fn from_f32(shape: &[i64], values: &[f32]) -> Tensor {
        let mut data = Vec::with_capacity(values.len() * 4);
        for value in values {
            data.extend_from_slice(&value.to_le_bytes());
        }
        Tensor { shape: shape.to_vec(), dtype: Dtype::Float32 as i32, data }
    }

    /// Number of elements the shape describes (checked: a shape such as
    /// `[2^62, 2^62, 4]` is refused, not wrapped around).
    pub fn element_count(&self) -> Result<usize, TensorError> {
        if self.shape.iter().any(|&dim| dim < 0) {
            return Err(TensorError::NegativeDimension { shape: self.shape.clone() });
        }
        self.shape
            .iter()
            .try_fold(1usize, |count, &dim| count.checked_mul(dim as usize))
            .filter(|count| count.checked_mul(8).is_some())
            .ok_or_else(|| TensorError::TooLarge { shape: self.shape.clone() })
    }

    /// Row-major int64 values; the dtype must be int64 and the byte length must match.
    pub fn to_i64(&self) -> Result<Vec<i64>, TensorError> {
        let dtype = self.dtype();
        if dtype != Dtype::Int64 {
            return Err(TensorError::WrongDtype { found: dtype.name().to_string(), expected: "int64" });
        }
        let expected = self.element_count()? * 8;
        if self.data.len() != expected {
            return Err(TensorError::WrongByteLength {
                shape: self.shape.clone(),
                dtype: dtype.name().to_string(),
                expected,
                found: self.data.len(),
            });
        }
        Ok(self.data.chunks_exact(8).map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes"))).collect())
    }

    /// Row-major float32 values; the dtype must be float32 and the byte length
    /// must match the shape.
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorError> {
        let dtype = self.dtype();
        if dtype != Dtype::Float32 {
            let found = Dtype::try_from(self.dtype).map(|known| known.name().to_string()).unwrap_or_else(|_| format!("code {}", self.dtype));
            return Err(TensorError::WrongDtype { found, expected: "float32 (int64 for token ids)" });
        }
        let expected = self.element_count()? * 4;
        if self.data.len() != expected {
            return Err(TensorError::WrongByteLength {
                shape: self.shape.clone(),
                dtype: dtype.name().to_string(),
                expected,
                found: self.data.len(),
            });
        }
        Ok(self.data.chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_long_shapes_are_refused_with_short_messages() {
        let huge = Tensor { shape: vec![1 << 62, 1 << 62, 4], dtype: Dtype::Float32 as i32, data: Vec::new() };
        assert_eq!(huge.element_count(), Err(TensorError::TooLarge { shape: huge.shape.clone() }));
        assert!(huge.to_f32().unwrap_err().to_string().contains("more elements than this machine can address"));
        let long = Tensor { shape: vec![1; 1000], dtype: Dtype::Float32 as i32, data: Vec::new() };
        let message = long.to_f32().unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("(1000 dimensions)"), "{message}");
        assert_eq!(short_shape(&[1, 3, 8, 8]), "[1, 3, 8, 8]");
    }

    #[test]
    fn float32_round_trip_and_checks() {
        let tensor = Tensor::from_f32(&[2, 2], &[1.0, -2.5, 3.0, f32::MAX]);
        assert_eq!(tensor.to_f32().unwrap(), vec![1.0, -2.5, 3.0, f32::MAX]);

        let mut short = tensor.clone();
        short.data.pop();
        assert!(matches!(short.to_f32(), Err(TensorError::WrongByteLength { expected: 16, found: 15, .. })));

        let mut int = tensor.clone();
        int.dtype = Dtype::Int32 as i32;
        assert_eq!(int.to_f32().unwrap_err().to_string(), "tensor dtype int32 is not supported here; expected float32 (int64 for token ids)");
        let ids = Tensor { shape: vec![2], dtype: Dtype::Int64 as i32, data: [7i64, -3].iter().flat_map(|v| v.to_le_bytes()).collect() };
        assert_eq!(ids.to_i64().unwrap(), vec![7, -3]);

        let negative = Tensor { shape: vec![-1, 2], dtype: Dtype::Float32 as i32, data: vec![] };
        assert!(matches!(negative.to_f32(), Err(TensorError::NegativeDimension { .. })));
    }
}
