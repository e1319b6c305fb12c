//! The data a checkpoint holds once read: tensors as contiguous little-endian bytes and
//! the Python containers and scalars around them, as a plain tree. Nothing here refers
//! back to the file, so a [`Value`] outlives the bytes it was read from.

use std::fmt;

/// The element types layerlens reads. Each one is a torch storage class in a
/// `torch.save` archive and a dtype name in a safetensors header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// PyTorch's name for it, `float32`, `bfloat16`, `bool`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }
}

/// A tensor's elements, copied out of the checkpoint in row-major order whatever the
/// view's strides were.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub dtype: Dtype,
    /// Empty for a 0-d tensor (a scalar, such as an optimizer's `step`).
    pub shape: Vec<usize>,
    /// `numel() * dtype.size()` bytes, little-endian, contiguous.
    pub data: Vec<u8>,
}

impl TensorData {
    /// Number of elements: the product of the shape (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Every element converted to `f32` (booleans as 0 and 1; wide integers and `f64`
    /// are rounded to the nearest `f32`).
    pub fn to_f32(&self) -> Vec<f32> {
        let size = self.dtype.size();
        self.data
            .chunks_exact(size)
            .map(|bytes| match self.dtype {
                Dtype::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                Dtype::F64 => f64::from_le_bytes(eight(bytes)) as f32,
                Dtype::F16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
                Dtype::BF16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
                Dtype::I64 => i64::from_le_bytes(eight(bytes)) as f32,
                Dtype::I32 => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32,
                Dtype::I16 => i16::from_le_bytes([bytes[0], bytes[1]]) as f32,
                Dtype::I8 => bytes[0] as i8 as f32,
                Dtype::U8 => bytes[0] as f32,
                Dtype::Bool => f32::from(u8::from(bytes[0] != 0)),
            })
            .collect()
    }
}

fn eight(bytes: &[u8]) -> [u8; 8] {
    [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
}

/// A Python value from a checkpoint's pickle. Dicts keep their items in file order
/// (Python dicts are ordered) and may have any keys; an optimizer's `state` is keyed by
/// int. Sets read as lists, `torch.Size` as a tuple of ints, a torch dtype as its name
/// (`"torch.float32"`), `nn.Parameter` as its tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Tensor(TensorData),
}

impl Value {
    /// What kind of value this is, in Python's words, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The value of a dict's item whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(item_key, _)| item_key.as_str() == Some(key)).map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }
}

/// Python-like text: `{'lr': 0.001, 'betas': (0.9, 0.999)}`, with a tensor shown as its
/// dtype and shape, `tensor(float32, [8, 4])`, and bytes as their length.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn sequence(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(int) => write!(f, "{int}"),
            Value::Float(float) => write!(f, "{float:?}"),
            Value::Str(text) => write!(f, "'{text}'"),
            Value::Bytes(bytes) => write!(f, "<{} bytes>", bytes.len()),
            Value::List(items) => {
                f.write_str("[")?;
                sequence(f, items)?;
                f.write_str("]")
            }
            Value::Tuple(items) => {
                f.write_str("(")?;
                sequence(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Value::Dict(items) => {
                f.write_str("{")?;
                for (index, (key, value)) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
            Value::Tensor(tensor) => write!(f, "tensor({}, {:?})", tensor.dtype.name(), tensor.shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_f32_reads_every_dtype() {
        let check = |dtype: Dtype, data: Vec<u8>, expected: Vec<f32>| {
            let tensor = TensorData { dtype, shape: vec![expected.len()], data };
            assert_eq!(tensor.to_f32(), expected, "{dtype:?}");
        };
        check(Dtype::F32, [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![1.5, -2.0]);
        check(Dtype::F64, [0.25f64].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![0.25]);
        check(Dtype::F16, vec![0x00, 0x3c, 0x00, 0xc0], vec![1.0, -2.0]);
        check(Dtype::BF16, vec![0x80, 0x3f, 0x40, 0xc0], vec![1.0, -3.0]);
        check(Dtype::I64, (-7i64).to_le_bytes().to_vec(), vec![-7.0]);
        check(Dtype::I32, 9i32.to_le_bytes().to_vec(), vec![9.0]);
        check(Dtype::I16, (-3i16).to_le_bytes().to_vec(), vec![-3.0]);
        check(Dtype::I8, vec![0xff], vec![-1.0]);
        check(Dtype::U8, vec![0xff], vec![255.0]);
        check(Dtype::Bool, vec![0, 1], vec![0.0, 1.0]);
    }

    #[test]
    fn display_reads_like_python() {
        let value = Value::Dict(vec![
            (Value::Str("betas".into()), Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)])),
            (Value::Int(0), Value::Tuple(vec![Value::Bool(true)])),
            (Value::Str("w".into()), Value::Tensor(TensorData { dtype: Dtype::F16, shape: vec![2, 3], data: vec![0; 12] })),
            (Value::Str("n".into()), Value::List(vec![Value::None, Value::Bytes(vec![1, 2])])),
        ]);
        assert_eq!(value.to_string(), "{'betas': (0.9, 0.999), 0: (True,), 'w': tensor(float16, [2, 3]), 'n': [None, <2 bytes>]}");
    }
}
