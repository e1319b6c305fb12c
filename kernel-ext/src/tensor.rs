//! A plain float32 tensor for notebook inputs and results: a shape and row-major
//! values, read from `.npy` files or built in a cell, converted to and from the
//! wire `Tensor` at the edge.

use crate::display::{escape_html, Bundle};
use crate::Error;
use layerlens_client::npy;
use layerlens_proto as proto;
use std::path::Path;

/// A dense float32 tensor: `data` holds the elements in row-major (C) order, e.g. an
/// image batch of shape (batch, channels, height, width).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `shape` holding `data`; the element count must match the shape.
    pub fn new(shape: &[i64], data: Vec<f32>) -> Result<Tensor, Error> {
        let expected = element_count(shape)?;
        if data.len() != expected {
            return Err(Error::BadInput(format!("shape {shape:?} needs {expected} values but {} were given", data.len())));
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// Zeros of `shape`.
    pub fn zeros(shape: &[i64]) -> Result<Tensor, Error> {
        Ok(Tensor { shape: shape.to_vec(), data: vec![0.0; element_count(shape)?] })
    }

    /// Reads a C-order float32 `.npy` file (float64 is converted to float32).
    pub fn from_npy(path: impl AsRef<Path>) -> Result<Tensor, Error> {
        let (shape, data) =
            npy::read_f32(path).map_err(|error| Error::File { path: error.path().display().to_string(), reason: error.reason().to_string() })?;
        Tensor::new(&shape, data)
    }

    /// The wire form (float32, little-endian bytes).
    pub fn to_wire(&self) -> proto::Tensor {
        proto::Tensor::from_f32(&self.shape, &self.data)
    }

    /// Reads a float32 wire tensor the daemon answered.
    pub fn from_wire(tensor: &proto::Tensor) -> Result<Tensor, Error> {
        let data = tensor.to_f32().map_err(|error| Error::BadAnswer(format!("the daemon answered a tensor that cannot be read: {error}")))?;
        Ok(Tensor { shape: tensor.shape.clone(), data })
    }

    /// The smallest and largest value (NaN is skipped); `None` for an empty tensor.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        self.data.iter().filter(|value| !value.is_nan()).fold(None, |range, &value| match range {
            None => Some((value, value)),
            Some((low, high)) => Some((low.min(value), high.max(value))),
        })
    }

    /// One line for people: shape and value range.
    pub fn describe(&self) -> String {
        let shape = self.shape.iter().map(|dim| dim.to_string()).collect::<Vec<_>>().join(", ");
        match self.min_max() {
            Some((low, high)) => format!("Tensor ({shape}) float32, values in [{low:.4}, {high:.4}]"),
            None => format!("Tensor ({shape}) float32, empty"),
        }
    }

    pub fn evcxr_display(&self) {
        Bundle::new().text("text/html", format!("<code>{}</code>", escape_html(&self.describe()))).text("text/plain", self.describe()).print();
    }
}

fn element_count(shape: &[i64]) -> Result<usize, Error> {
    if shape.iter().any(|&dim| dim < 0) {
        return Err(Error::BadInput(format!("shape {shape:?} has a negative dimension")));
    }
    Ok(shape.iter().map(|&dim| dim as usize).product())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_the_shape() {
        assert_eq!(Tensor::new(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap().data.len(), 4);
        let error = Tensor::new(&[1, 1, 8, 8], vec![0.0; 63]).unwrap_err();
        assert_eq!(error.to_string(), "shape [1, 1, 8, 8] needs 64 values but 63 were given");
        assert!(Tensor::zeros(&[2, -1]).is_err());
        assert_eq!(Tensor::zeros(&[2, 3]).unwrap().data, vec![0.0; 6]);
    }

    #[test]
    fn wire_round_trip() {
        let tensor = Tensor::new(&[1, 3], vec![-1.5, 0.0, 2.25]).unwrap();
        assert_eq!(Tensor::from_wire(&tensor.to_wire()).unwrap(), tensor);
    }

    /// Reading is `layerlens_client::npy`'s (its tests cover dtypes and damaged files);
    /// this checks the tensor and the errors a notebook user sees.
    #[test]
    fn npy_files() {
        let dir = std::env::temp_dir().join(format!("layerlens-kernel-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        npy::write_f32(dir.join("x.npy"), &[2, 2], &[1.0, 2.0, 3.0, 4.5]).unwrap();
        let tensor = Tensor::from_npy(dir.join("x.npy")).unwrap();
        assert_eq!(tensor, Tensor::new(&[2, 2], vec![1.0, 2.0, 3.0, 4.5]).unwrap());
        assert_eq!(tensor.describe(), "Tensor (2, 2) float32, values in [1.0000, 4.5000]");
        let missing = Tensor::from_npy(dir.join("missing.npy")).unwrap_err().to_string();
        assert!(missing.starts_with("cannot read ") && missing.contains("missing.npy"), "{missing}");
        std::fs::write(dir.join("text.npy"), "not numpy").unwrap();
        assert!(Tensor::from_npy(dir.join("text.npy")).unwrap_err().to_string().contains("not a .npy file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
