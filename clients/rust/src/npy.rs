//! `.npy` files in and out, written once for every Rust client: the CLI reads model
//! inputs and writes attributions, the editor server reads a model's sample input, the
//! evcxr extension reads tensors in notebook cells, and the end-to-end tests read and
//! write fixtures. `npyz` parses and writes the format; this module decides what is
//! accepted and says what was wrong: C-order little-endian float32 (float64 is
//! converted) and, where a caller takes token ids, int64 (int32 is widened). A file
//! shorter than its header promises is refused before anything is allocated for it,
//! and every error names the file.

use layerlens_proto as proto;
use std::path::{Path, PathBuf};

/// Why a `.npy` file could not be read or written. The message names the file and what
/// was wrong with it: `cannot read x.npy: holds int16 values (<i2); expected float32
/// (float64 is converted)`.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {}: {reason}", .path.display())]
    Write { path: PathBuf, reason: String },
}

impl NpyError {
    pub fn path(&self) -> &Path {
        match self {
            NpyError::Read { path, .. } | NpyError::Write { path, .. } => path,
        }
    }

    /// What was wrong, without the file name.
    pub fn reason(&self) -> &str {
        match self {
            NpyError::Read { reason, .. } | NpyError::Write { reason, .. } => reason,
        }
    }
}

/// An array read from a `.npy` file: its shape, e.g. (batch, channels, height, width),
/// and its values in row-major (C) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<i64>,
    pub values: Values,
}

/// The element type an array was read as.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Float32(Vec<f32>),
    /// Token ids.
    Int64(Vec<i64>),
}

impl Array {
    /// The wire tensor: float32 or int64, little-endian.
    pub fn into_tensor(self) -> proto::Tensor {
        match self.values {
            Values::Float32(values) => proto::Tensor::from_f32(&self.shape, &values),
            Values::Int64(values) => {
                let data = values.iter().flat_map(|value| value.to_le_bytes()).collect();
                proto::Tensor { shape: self.shape, dtype: proto::Dtype::Int64 as i32, data }
            }
        }
    }
}

/// Which element types a caller takes.
#[derive(Clone, Copy, PartialEq)]
enum Accepted {
    Float32,
    Float32OrInt64,
}

impl Accepted {
    fn expected(self) -> &'static str {
        match self {
            Accepted::Float32 => "expected float32 (float64 is converted)",
            Accepted::Float32OrInt64 => "expected float32 (float64 is converted) or int64 token ids (int32 is widened)",
        }
    }
}

/// Reads a float32 array (float64 is converted) or an int64 one (token ids; int32 is
/// widened).
pub fn read(path: impl AsRef<Path>) -> Result<Array, NpyError> {
    read_accepting(path.as_ref(), Accepted::Float32OrInt64)
}

/// Reads a float32 array (float64 is converted): (shape, values in row-major order).
/// Integer files are refused.
pub fn read_f32(path: impl AsRef<Path>) -> Result<(Vec<i64>, Vec<f32>), NpyError> {
    let array = read_accepting(path.as_ref(), Accepted::Float32)?;
    match array.values {
        Values::Float32(values) => Ok((array.shape, values)),
        Values::Int64(_) => unreachable!("read_accepting answers float32 when only float32 is accepted"),
    }
}

/// Reads every array of a `.npz` file (numpy.savez, compressed or not), by name
/// without the `.npy` suffix, each as `read` would.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Array)>, NpyError> {
    use std::io::Read;
    let path = path.as_ref();
    let fail = |reason: String| NpyError::Read { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|error| fail(error.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|error| fail(format!("not a .npz file: {error}")))?;
    let mut arrays = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|error| fail(format!("not a .npz file: {error}")))?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|error| fail(format!("cannot read {name}: {error}")))?;
        let array = parse(&bytes, Accepted::Float32OrInt64, &|reason| fail(format!("array {name}: {reason}")))?;
        arrays.push((name, array));
    }
    Ok(arrays)
}

fn read_accepting(path: &Path, accepted: Accepted) -> Result<Array, NpyError> {
    let fail = |reason: String| NpyError::Read { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|error| fail(error.to_string()))?;
    parse(&bytes, accepted, &fail)
}

fn parse(bytes: &[u8], accepted: Accepted, fail: &dyn Fn(String) -> NpyError) -> Result<Array, NpyError> {
    let mut data = bytes;
    // Reading the header advances `data` to the first value.
    let header = npyz::NpyHeader::from_reader(&mut data).map_err(|error| fail(format!("not a .npy file: {error}")))?;
    if header.order() != npyz::Order::C {
        return Err(fail("stored in Fortran order; save it with numpy.ascontiguousarray".to_string()));
    }
    let descr = header.dtype().descr();
    let descr = descr.trim_matches('\'');
    let item_bytes: u64 = match (descr, accepted) {
        ("<f4" | "<i4", Accepted::Float32OrInt64) | ("<f4", Accepted::Float32) => 4,
        ("<f8" | "<i8", Accepted::Float32OrInt64) | ("<f8", Accepted::Float32) => 8,
        _ => return Err(fail(format!("holds {}; {}", describe_dtype(descr), accepted.expected()))),
    };
    let Ok(shape) = header.shape().iter().map(|&dim| i64::try_from(dim)).collect::<Result<Vec<i64>, _>>() else {
        return Err(fail(format!("shape {:?} has a dimension over the largest the wire takes (2^63 - 1)", header.shape())));
    };
    let count = header.shape().iter().try_fold(1u64, |count, &dim| count.checked_mul(dim));
    let needed_bytes = count.and_then(|count| count.checked_mul(item_bytes));
    // A header can promise more values than the file holds (an interrupted download or
    // copy); say so instead of allocating for them.
    match needed_bytes {
        Some(needed_bytes) if needed_bytes <= data.len() as u64 => {}
        Some(needed_bytes) => {
            return Err(fail(format!("truncated: shape {shape:?} needs {needed_bytes} bytes of values, the file holds {}", data.len())));
        }
        None => return Err(fail(format!("shape {shape:?} has more elements than can be addressed"))),
    }
    let file = npyz::NpyFile::with_header(header, data);
    let decode_error = |error: std::io::Error| fail(format!("cannot decode the values: {error}"));
    let values = match descr {
        "<f4" => Values::Float32(file.into_vec::<f32>().map_err(decode_error)?),
        "<f8" => Values::Float32(file.into_vec::<f64>().map_err(decode_error)?.into_iter().map(|value| value as f32).collect()),
        "<i8" => Values::Int64(file.into_vec::<i64>().map_err(decode_error)?),
        _ => Values::Int64(file.into_vec::<i32>().map_err(decode_error)?.into_iter().map(i64::from).collect()),
    };
    Ok(Array { shape, values })
}

/// Writes a C-order float32 array; `values` holds the shape's elements in row-major
/// order.
pub fn write_f32(path: impl AsRef<Path>, shape: &[i64], values: &[f32]) -> Result<(), NpyError> {
    use npyz::WriterBuilder;
    let path = path.as_ref();
    let fail = |reason: String| NpyError::Write { path: path.to_path_buf(), reason };
    let Ok(dims) = shape.iter().map(|&dim| u64::try_from(dim)).collect::<Result<Vec<u64>, _>>() else {
        return Err(fail(format!("shape {shape:?} has a negative dimension")));
    };
    let count = dims.iter().try_fold(1u64, |count, &dim| count.checked_mul(dim));
    if count != Some(values.len() as u64) {
        return Err(fail(format!("shape {shape:?} does not hold the {} values given", values.len())));
    }
    let file = std::fs::File::create(path).map_err(|error| fail(error.to_string()))?;
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|error| fail(error.to_string()))?;
    writer.extend(values.iter().copied()).map_err(|error| fail(error.to_string()))?;
    writer.finish().map_err(|error| fail(error.to_string()))
}

/// `int16 values (<i2)` for the dtypes numpy users meet, else `values of dtype >f4`.
fn describe_dtype(descr: &str) -> String {
    let name = match descr {
        "<f2" => "float16",
        "<f4" => "float32",
        "<f8" => "float64",
        "|i1" => "int8",
        "<i2" => "int16",
        "<i4" => "int32",
        "<i8" => "int64",
        "|u1" => "uint8",
        "<u2" => "uint16",
        "<u4" => "uint32",
        "<u8" => "uint64",
        "|b1" => "bool",
        _ => return format!("values of dtype {descr}"),
    };
    format!("{name} values ({descr})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    /// Writes `values` with npyz's own writer, so the reader is checked against files
    /// it did not write (numpy's layout), in `order`.
    fn write_with_npyz<T: npyz::AutoSerialize>(path: &Path, shape: &[u64], values: Vec<T>, order: npyz::Order) {
        let mut writer =
            npyz::WriteOptions::new().default_dtype().order(order).shape(shape).writer(std::fs::File::create(path).unwrap()).begin_nd().unwrap();
        writer.extend(values).unwrap();
        writer.finish().unwrap();
    }

    #[test]
    fn float32_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&path, &[2, 3, 4], &values).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![2, 3, 4], values.clone()));
        assert_eq!(read(&path).unwrap(), Array { shape: vec![2, 3, 4], values: Values::Float32(values.clone()) });
        assert_eq!(read(&path).unwrap().into_tensor(), proto::Tensor::from_f32(&[2, 3, 4], &values));
        // A 0-d array and an empty one keep their shapes.
        write_f32(&path, &[], &[7.5]).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![], vec![7.5]));
        write_f32(&path, &[0, 3], &[]).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![0, 3], vec![]));
    }

    #[test]
    fn float64_is_converted_and_integers_are_token_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_with_npyz(&path, &[2, 2], vec![1.0f64, 2.0, 3.0, 4.5], npyz::Order::C);
        assert_eq!(read_f32(&path).unwrap(), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]));

        let ids: Vec<i64> = vec![101, 2054, -1, i32::MAX as i64];
        write_with_npyz(&path, &[1, 4], ids.clone(), npyz::Order::C);
        let int64 = read(&path).unwrap();
        write_with_npyz(&path, &[1, 4], ids.iter().map(|&id| id as i32).collect(), npyz::Order::C);
        let int32 = read(&path).unwrap();
        for array in [int64, int32] {
            assert_eq!(array, Array { shape: vec![1, 4], values: Values::Int64(ids.clone()) });
            let tensor = array.into_tensor();
            assert_eq!(tensor.dtype, proto::Dtype::Int64 as i32);
            assert_eq!(tensor.data, ids.iter().flat_map(|id| id.to_le_bytes()).collect::<Vec<u8>>());
        }
        // Where only float32 is taken, token ids are refused.
        let error = read_f32(&path).unwrap_err().to_string();
        assert!(error.ends_with("holds int32 values (<i4); expected float32 (float64 is converted)"), "{error}");
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let make_truncated = |path: &Path| {
            write_f32(path, &[1, 1, 8, 8], &[0.25; 64]).unwrap();
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() - 10]).unwrap();
        };
        // (file name, how to make it, what the error must say after `cannot read PATH: `)
        type MakeFile = fn(&Path);
        let cases: [(&str, MakeFile, &str); 6] = [
            ("missing.npy", |_| {}, "No such file or directory"),
            ("text.npy", |path| std::fs::write(path, "not numpy").unwrap(), "not a .npy file"),
            (
                "int16.npy",
                |path| write_with_npyz(path, &[4], vec![1i16, 2, 3, 4], npyz::Order::C),
                "holds int16 values (<i2); expected float32 (float64 is converted)",
            ),
            ("uint8.npy", |path| write_with_npyz(path, &[2], vec![1u8, 2], npyz::Order::C), "holds uint8 values (|u1); expected float32"),
            ("fortran.npy", |path| write_with_npyz(path, &[2, 2], vec![1.0f32; 4], npyz::Order::Fortran), "stored in Fortran order"),
            ("truncated.npy", make_truncated, "truncated: shape [1, 1, 8, 8] needs 256 bytes of values, the file holds 246"),
        ];
        for (name, make, expected) in cases {
            let path = dir.path().join(name);
            make(&path);
            for error in [read(&path).map(|_| ()).unwrap_err(), read_f32(&path).map(|_| ()).unwrap_err()] {
                let message = error.to_string();
                assert!(matches!(error, NpyError::Read { .. }), "{message}");
                assert!(message.starts_with(&format!("cannot read {}: ", path.display())), "{message}");
                assert!(message.contains(expected), "{name}: {message:?} does not say {expected:?}");
                assert_eq!(error.path(), path);
                assert!(!message.ends_with('.'), "{message}");
            }
        }
        // Where token ids are taken, the message says so.
        let error = read(dir.path().join("int16.npy")).unwrap_err().to_string();
        assert!(error.ends_with("expected float32 (float64 is converted) or int64 token ids (int32 is widened)"), "{error}");
    }

    #[test]
    fn writing_checks_the_shape_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let cases: &[(&[i64], usize, &str)] =
            &[(&[1, 1, 8, 8], 63, "shape [1, 1, 8, 8] does not hold the 63 values given"), (&[2, -1], 2, "shape [2, -1] has a negative dimension")];
        for (shape, count, expected) in cases {
            let error = write_f32(&path, shape, &vec![0.0; *count]).unwrap_err();
            assert_eq!(error.to_string(), format!("cannot write {}: {expected}", path.display()));
        }
        let error = write_f32(dir.path().join("no-such-dir/out.npy"), &[1], &[0.0]).unwrap_err();
        assert!(matches!(error, NpyError::Write { .. }) && error.to_string().contains("no-such-dir/out.npy"), "{error}");
    }
}
