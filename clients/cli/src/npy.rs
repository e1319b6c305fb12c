//! Tensors in and out of `.npy` files (float32; float64 input is converted).

use anyhow::{bail, Context};
use std::path::Path;

/// Reads a model input: int64 arrays (token ids) stay int64, others become float32.
pub fn read_input(path: &Path) -> anyhow::Result<layerlens_proto::Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{} is not a .npy file", path.display()))?;
    if matches!(file.dtype().descr().as_str(), "'<i8'" | "'<i4'") && file.order() == npyz::Order::C {
        let shape: Vec<i64> = file.shape().iter().map(|&dim| dim as i64).collect();
        let values: Vec<i64> = if file.dtype().descr() == "'<i8'" {
            file.into_vec::<i64>()?
        } else {
            file.into_vec::<i32>()?.into_iter().map(i64::from).collect()
        };
        let data = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        return Ok(layerlens_proto::Tensor { shape, dtype: layerlens_proto::Dtype::Int64 as i32, data });
    }
    let (shape, values) = read_f32(path)?;
    Ok(layerlens_proto::Tensor::from_f32(&shape, &values))
}

/// Reads a C-order float32 (or float64) array; answers (shape, values).
pub fn read_f32(path: &Path) -> anyhow::Result<(Vec<i64>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{} is not a .npy file", path.display()))?;
    if file.order() != npyz::Order::C {
        bail!("{} is stored in Fortran order; save it with numpy.ascontiguousarray", path.display());
    }
    let shape: Vec<i64> = file.shape().iter().map(|&dim| dim as i64).collect();
    let dtype = file.dtype().descr();
    let values = match dtype.as_str() {
        "'<f4'" => file.into_vec::<f32>()?,
        "'<f8'" => file.into_vec::<f64>()?.into_iter().map(|value| value as f32).collect(),
        other => bail!("{} holds dtype {}; expected float32 (or int64 token ids for inputs)", path.display(), other.trim_matches('\'')),
    };
    Ok((shape, values))
}

pub fn write_f32(path: &Path, shape: &[i64], values: &[f32]) -> anyhow::Result<()> {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let dims: Vec<u64> = shape.iter().map(|&dim| dim as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer.extend(values.iter().copied())?;
    writer.finish().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
