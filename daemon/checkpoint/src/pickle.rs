//! A data-only unpickler for the `data.pkl` of a `torch.save` archive, the equivalent of
//! `torch.load(weights_only=True)` (torch/_weights_only_unpickler.py) without Python.
//!
//! A pickle is a program for a stack machine: opcodes push scalars and empty
//! containers, fill containers, and `GLOBAL` names a Python callable that `REDUCE` then
//! calls with a tuple of arguments. That call is what makes `pickle.load` run code, so
//! here a global is looked up in a short allow-list *when it is named*, and anything else
//! stops reading with [`CheckpointError::ForbiddenGlobal`]. The allow-list is what
//! `torch.save` needs for a state dict, an optimizer's state and the plain Python
//! values beside them:
//!
//! - `torch._utils._rebuild_tensor_v2(storage, offset, sizes, strides, requires_grad,
//!   hooks[, metadata])`: a tensor, a strided view of a storage. The storage comes from
//!   a persistent id `('storage', torch.FloatStorage, key, location, numel)`, which
//!   names the archive record `data/<key>`.
//! - `torch._utils._rebuild_parameter(_with_state)`: an `nn.Parameter`, read as its tensor.
//! - `collections.OrderedDict` (a state dict; its attributes, such as `_metadata`, are
//!   dropped), `torch.Size` (a tuple), `builtins.set`/`frozenset` (lists),
//!   `_codecs.encode` (how protocol 2 writes `bytes`), the `torch.*Storage` classes and
//!   torch dtypes (read as their names).
//!
//! Opcodes of protocols 2 to 5 that these need are supported; others are refused.
//!
//! Objects live in an arena and the stack and memo hold indices into it, so a container
//! memoised while empty and filled afterwards is seen filled wherever it is referenced
//! (as in Python). The tree is only built at `STOP`, under limits: shared references
//! (which a hostile pickle can use to describe an exponentially large tree in a few
//! bytes, or a cycle) may not expand past a budget of values, tensor bytes and depth.
//! Every length is checked against the bytes that remain before anything is allocated,
//! and a tensor's extent against its storage when it is rebuilt.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::CheckpointError;
use crate::value::{Dtype, TensorData, Value};

/// Deepest nesting of containers the reader builds (a cycle reaches it too).
const MAX_DEPTH: usize = 200;

/// Longest storage key read (torch writes decimal numbers).
const MAX_STORAGE_KEY: usize = 64;

/// Most dimensions a tensor may have (PyTorch's kernels stop at 25).
const MAX_DIMENSIONS: usize = 64;

/// A storage's bytes as the archive holds them, borrowed from the file where it can be.
pub(crate) struct Storage<'a> {
    pub dtype: Dtype,
    /// Number of elements, as the persistent id declared it.
    pub numel: u64,
    /// The archive record, for messages (`archive/data/3`).
    pub record: String,
    /// `numel * dtype.size()` bytes; the loader checks this.
    pub bytes: Cow<'a, [u8]>,
}

/// Runs the pickle and returns the object it builds. `load_storage(key, dtype, numel)`
/// gives the bytes of record `data/<key>`; it is called once per storage key.
pub(crate) fn unpickle<'a>(
    pickle: &[u8],
    load_storage: impl FnMut(&str, Dtype, u64) -> Result<Storage<'a>, CheckpointError>,
) -> Result<Value, CheckpointError> {
    let mut machine = Machine {
        input: pickle,
        position: 0,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        storage_by_key: HashMap::new(),
        load_storage,
        encoded_bytes_left: pickle.len(),
    };
    let root = machine.run()?;
    let storage_bytes: u64 = machine.storages.iter().map(|storage| storage.bytes.len() as u64).sum();
    // A checkpoint rarely expands past its storages and its pickle: tied weights read
    // twice, a few broadcast views. Four times over (plus room for small files) is generous.
    let mut budget = Budget {
        values_left: pickle.len().saturating_mul(16).saturating_add(4096),
        bytes_left: storage_bytes.saturating_add(pickle.len() as u64).saturating_mul(4).saturating_add(64 << 20),
    };
    machine.build(root, 0, &mut budget)
}

type Id = usize;

/// An object under construction. Containers hold arena ids so that they can be shared.
enum Object {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    /// Index into `Machine::storages`.
    Storage(usize),
    Tensor(View),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::List(_) => "list",
            Object::Tuple(_) => "tuple",
            Object::Dict(_) => "dict",
            Object::Global(_) => "class or function",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// A tensor as a view of a storage, checked to lie inside it.
struct View {
    storage: usize,
    offset: usize,
    sizes: Vec<usize>,
    strides: Vec<usize>,
}

/// The allow-listed globals.
#[derive(Clone, Copy)]
enum Global {
    RebuildTensor,
    RebuildParameter,
    OrderedDict,
    Size,
    Set,
    Encode,
    StorageType(Dtype),
}

impl Global {
    /// Looks a global up by the module and name the pickle wrote. Torch dtypes are
    /// values rather than callables and come back as their names.
    fn resolve(module: &str, name: &str) -> Result<Object, CheckpointError> {
        let global = match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Global::RebuildParameter,
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch", "Size") => Global::Size,
            // Protocol 2 writes Python 3's `builtins` under its Python 2 name.
            ("builtins" | "__builtin__", "set" | "frozenset") => Global::Set,
            ("_codecs", "encode") => Global::Encode,
            ("torch", _) if DTYPE_NAMES.contains(&name) => return Ok(Object::Str(format!("torch.{name}"))),
            ("torch", _) if name.ends_with("Storage") => match storage_dtype(name) {
                Some(dtype) => Global::StorageType(dtype),
                None => return Err(CheckpointError::Unsupported(format!("tensors stored as `torch.{name}`"))),
            },
            ("torch._utils", _) if name.starts_with("_rebuild_") => {
                return Err(CheckpointError::Unsupported(format!(
                    "a tensor rebuilt by `torch._utils.{name}` (a quantized, sparse, nested or other special tensor)"
                )))
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                return Err(CheckpointError::Unsupported("a tensor subclass or a tensor with Python attributes".into()))
            }
            _ => return Err(CheckpointError::ForbiddenGlobal { module: module.into(), name: name.into() }),
        };
        Ok(Object::Global(global))
    }

    fn python_name(self) -> &'static str {
        match self {
            Global::RebuildTensor => "torch._utils._rebuild_tensor_v2",
            Global::RebuildParameter => "torch._utils._rebuild_parameter",
            Global::OrderedDict => "collections.OrderedDict",
            Global::Size => "torch.Size",
            Global::Set => "builtins.set",
            Global::Encode => "_codecs.encode",
            Global::StorageType(_) => "a torch storage class",
        }
    }
}

/// Dtypes that may appear as values (`{"dtype": torch.float16}` in a config).
const DTYPE_NAMES: &[&str] = &[
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
];

/// The legacy typed-storage class names `torch.save` writes, by element type.
fn storage_dtype(class_name: &str) -> Option<Dtype> {
    Some(match class_name {
        "FloatStorage" => Dtype::F32,
        "DoubleStorage" => Dtype::F64,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::Bool,
        _ => return None,
    })
}

mod opcode {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES: u8 = b'B';
    pub const BINBYTES8: u8 = 0x8e;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const EMPTY_SET: u8 = 0x8f;
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const FROZENSET: u8 = 0x91;
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const ADDITEMS: u8 = 0x90;
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const REDUCE: u8 = b'R';
    pub const NEWOBJ: u8 = 0x81;
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
}

struct Machine<'p, 'a, F> {
    input: &'p [u8],
    position: usize,
    objects: Vec<Object>,
    stack: Vec<Id>,
    /// Stack heights at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    storages: Vec<Storage<'a>>,
    storage_by_key: HashMap<String, usize>,
    load_storage: F,
    /// What `_codecs.encode` may still produce (see `call`).
    encoded_bytes_left: usize,
}

/// What building the tree may still produce: values, and bytes copied into tensors,
/// strings and bytes objects.
struct Budget {
    values_left: usize,
    bytes_left: u64,
}

impl Budget {
    fn spend_bytes(&mut self, count: usize) -> Result<(), CheckpointError> {
        self.bytes_left = self
            .bytes_left
            .checked_sub(count as u64)
            .ok_or_else(|| CheckpointError::TooLarge("its values expand to more than four times the size of its pickle and storages".into()))?;
        Ok(())
    }
}

impl<'p, 'a, F: FnMut(&str, Dtype, u64) -> Result<Storage<'a>, CheckpointError>> Machine<'p, 'a, F> {
    /// Executes opcodes up to `STOP` and returns the id of the object left on top.
    fn run(&mut self) -> Result<Id, CheckpointError> {
        use opcode::*;
        loop {
            let at = self.position;
            let code = self.take(1)?[0];
            match code {
                PROTO => {
                    let version = self.take(1)?[0];
                    if version > 5 {
                        return Err(CheckpointError::Unsupported(format!("pickle protocol {version}")));
                    }
                }
                // A frame only tells an unpickler how much to read ahead.
                FRAME => {
                    self.take(8)?;
                }
                STOP => return self.pop(),
                MARK => self.marks.push(self.stack.len()),
                NONE => self.push(Object::None),
                NEWTRUE => self.push(Object::Bool(true)),
                NEWFALSE => self.push(Object::Bool(false)),
                BININT => {
                    let value = i32::from_le_bytes(self.array()?);
                    self.push(Object::Int(value.into()));
                }
                BININT1 => {
                    let value = self.take(1)?[0];
                    self.push(Object::Int(value.into()));
                }
                BININT2 => {
                    let value = u16::from_le_bytes(self.array()?);
                    self.push(Object::Int(value.into()));
                }
                LONG1 | LONG4 => {
                    let length = if code == LONG1 { u64::from(self.take(1)?[0]) } else { u64::from(u32::from_le_bytes(self.array()?)) };
                    let bytes = self.take_u64(length)?;
                    self.push(Object::Int(little_endian_int(bytes)?));
                }
                BINFLOAT => {
                    let value = f64::from_be_bytes(self.array()?);
                    self.push(Object::Float(value));
                }
                BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 => {
                    let length = self.length_prefix(code, SHORT_BINUNICODE, BINUNICODE)?;
                    let bytes = self.take_u64(length)?;
                    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(format!("the string at byte {at} is not UTF-8")))?;
                    self.push(Object::Str(text.to_owned()));
                }
                SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                    let length = self.length_prefix(code, SHORT_BINBYTES, BINBYTES)?;
                    let bytes = self.take_u64(length)?.to_vec();
                    self.push(Object::Bytes(bytes));
                }
                EMPTY_DICT => self.push(Object::Dict(Vec::new())),
                EMPTY_LIST | EMPTY_SET => self.push(Object::List(Vec::new())),
                EMPTY_TUPLE => self.push(Object::Tuple(Vec::new())),
                TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items));
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let count = usize::from(code - TUPLE1) + 1;
                    let mut items = (0..count).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push(Object::Tuple(items));
                }
                FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push(Object::List(items));
                }
                APPEND => {
                    let item = self.pop()?;
                    self.list_on_top("APPEND")?.push(item);
                }
                APPENDS | ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.list_on_top("APPENDS")?.extend(items);
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.dict_on_top("SETITEM")?.push((key, value));
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(corrupt(format!("SETITEMS at byte {at} has an odd number of items")));
                    }
                    let pairs = items.chunks_exact(2).map(|pair| (pair[0], pair[1]));
                    self.dict_on_top("SETITEMS")?.extend(pairs);
                }
                BINPUT | LONG_BINPUT => {
                    let index = if code == BINPUT { u32::from(self.take(1)?[0]) } else { u32::from_le_bytes(self.array()?) };
                    let top = self.top()?;
                    self.memo.insert(index, top);
                }
                MEMOIZE => {
                    let top = self.top()?;
                    let index = u32::try_from(self.memo.len()).map_err(|_| corrupt("too many memo entries".into()))?;
                    self.memo.insert(index, top);
                }
                BINGET | LONG_BINGET => {
                    let index = if code == BINGET { u32::from(self.take(1)?[0]) } else { u32::from_le_bytes(self.array()?) };
                    let id =
                        *self.memo.get(&index).ok_or_else(|| corrupt(format!("memo entry {index} is read at byte {at} before it is written")))?;
                    self.stack.push(id);
                }
                GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = Global::resolve(module, name)?;
                    self.push(global);
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Object::Str(module), Object::Str(name)) = (&self.objects[module], &self.objects[name]) else {
                        return Err(corrupt(format!("STACK_GLOBAL at byte {at} expects two strings")));
                    };
                    let global = Global::resolve(module, name)?;
                    self.push(global);
                }
                // NEWOBJ is `cls.__new__(cls, *args)`; for the allow-listed classes that
                // builds the same object as calling them.
                REDUCE | NEWOBJ => {
                    let arguments = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.call(callable, arguments)?;
                    self.stack.push(result);
                }
                BUILD => {
                    // Sets an object's attributes; an OrderedDict's (a state dict's
                    // `_metadata`) are not part of its items and are dropped.
                    self.pop()?;
                    let target = self.top()?;
                    if !matches!(self.objects[target], Object::Dict(_)) {
                        return Err(corrupt(format!("BUILD at byte {at} sets attributes of a {}", self.objects[target].kind())));
                    }
                }
                BINPERSID => {
                    let id = self.pop()?;
                    let storage = self.persistent_storage(id)?;
                    self.push(Object::Storage(storage));
                }
                _ => {
                    return Err(CheckpointError::Unsupported(format!("pickle opcode {code:#04x} (at byte {at}), which torch.save does not write")));
                }
            }
        }
    }

    fn take(&mut self, count: usize) -> Result<&'p [u8], CheckpointError> {
        let end = self.position.checked_add(count).filter(|&end| end <= self.input.len());
        let Some(end) = end else {
            return Err(corrupt(format!("the pickle ends inside an opcode (needs {count} bytes at byte {})", self.position)));
        };
        let bytes = &self.input[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    fn take_u64(&mut self, count: u64) -> Result<&'p [u8], CheckpointError> {
        let count = usize::try_from(count).map_err(|_| corrupt(format!("a length of {count} bytes at byte {}", self.position)))?;
        self.take(count)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// The length before a string or bytes: one byte for the short form, four for the
    /// plain one, eight for the rest.
    fn length_prefix(&mut self, code: u8, short: u8, four_bytes: u8) -> Result<u64, CheckpointError> {
        Ok(if code == short {
            u64::from(self.take(1)?[0])
        } else if code == four_bytes {
            u64::from(u32::from_le_bytes(self.array()?))
        } else {
            u64::from_le_bytes(self.array()?)
        })
    }

    /// A newline-terminated argument of `GLOBAL`.
    fn line(&mut self) -> Result<&'p str, CheckpointError> {
        let rest = &self.input[self.position..];
        let Some(length) = rest.iter().position(|&byte| byte == b'\n') else {
            return Err(corrupt(format!("the pickle ends inside a GLOBAL name at byte {}", self.position)));
        };
        let line = std::str::from_utf8(&rest[..length]).map_err(|_| corrupt(format!("a GLOBAL name at byte {} is not UTF-8", self.position)))?;
        self.position += length + 1;
        Ok(line)
    }

    fn push(&mut self, object: Object) {
        self.objects.push(object);
        self.stack.push(self.objects.len() - 1);
    }

    /// The lowest stack height that may be popped: items below the last `MARK` belong
    /// to an enclosing container.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Id, CheckpointError> {
        if self.stack.len() <= self.floor() {
            return Err(corrupt(format!("the pickle pops an empty stack at byte {}", self.position)));
        }
        self.stack.pop().ok_or_else(|| corrupt("the pickle pops an empty stack".into()))
    }

    fn top(&self) -> Result<Id, CheckpointError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.floor() => Ok(id),
            _ => Err(corrupt(format!("the pickle reads an empty stack at byte {}", self.position))),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, CheckpointError> {
        let mark = self.marks.pop().ok_or_else(|| corrupt(format!("the pickle closes a MARK it never opened at byte {}", self.position)))?;
        Ok(self.stack.split_off(mark))
    }

    fn list_on_top(&mut self, opcode: &str) -> Result<&mut Vec<Id>, CheckpointError> {
        let top = self.top()?;
        match &mut self.objects[top] {
            Object::List(items) => Ok(items),
            other => Err(corrupt(format!("{opcode} on a {}", other.kind()))),
        }
    }

    fn dict_on_top(&mut self, opcode: &str) -> Result<&mut Vec<(Id, Id)>, CheckpointError> {
        let top = self.top()?;
        match &mut self.objects[top] {
            Object::Dict(items) => Ok(items),
            other => Err(corrupt(format!("{opcode} on a {}", other.kind()))),
        }
    }

    /// `REDUCE`: calls an allow-listed global with a tuple of arguments.
    fn call(&mut self, callable: Id, arguments: Id) -> Result<Id, CheckpointError> {
        let Object::Global(global) = self.objects[callable] else {
            return Err(corrupt(format!("the pickle calls a {}", self.objects[callable].kind())));
        };
        let wrong_arguments = || corrupt(format!("{} is called with arguments it does not take", global.python_name()));
        let arguments = match &self.objects[arguments] {
            // None of the allow-listed callables takes more than 7 arguments; checking
            // first keeps a memoised huge tuple from being copied call after call.
            Object::Tuple(arguments) if arguments.len() <= 7 => arguments.clone(),
            Object::Tuple(_) => return Err(wrong_arguments()),
            other => return Err(corrupt(format!("{} is called with a {}, not a tuple", global.python_name(), other.kind()))),
        };
        let object = match (global, arguments.as_slice()) {
            (Global::RebuildTensor, _) => Object::Tensor(self.tensor_view(&arguments)?),
            // A Parameter is its tensor; `requires_grad`, hooks and Python state are dropped.
            (Global::RebuildParameter, [tensor, ..]) if matches!(self.objects[*tensor], Object::Tensor(_)) => return Ok(*tensor),
            (Global::OrderedDict, []) => Object::Dict(Vec::new()),
            (Global::Set, []) => Object::List(Vec::new()),
            // `torch.Size(sizes)` is its tuple, and `set(items)` the list the pickler
            // made for it (and used nowhere else): the same objects, not copies.
            (Global::Size, [sizes]) if matches!(self.objects[*sizes], Object::Tuple(_)) => return Ok(*sizes),
            (Global::Set, [items]) if matches!(self.objects[*items], Object::List(_)) => return Ok(*items),
            // Protocol 2 writes `bytes` as `_codecs.encode(text, 'latin1')`, one char per byte.
            (Global::Encode, [text, encoding]) => match (&self.objects[*text], &self.objects[*encoding]) {
                (Object::Str(text), Object::Str(encoding)) if encoding == "latin1" => {
                    // Each legitimate call encodes a string written just before it, so the
                    // bytes made add up to less than the pickle; a memoised string encoded
                    // over and over does not.
                    self.encoded_bytes_left = self
                        .encoded_bytes_left
                        .checked_sub(text.len())
                        .ok_or_else(|| CheckpointError::TooLarge("the pickle decodes more bytes objects than it holds".into()))?;
                    Object::Bytes(text.chars().map(u8::try_from).collect::<Result<Vec<u8>, _>>().map_err(|_| wrong_arguments())?)
                }
                _ => return Err(wrong_arguments()),
            },
            _ => return Err(wrong_arguments()),
        };
        self.objects.push(object);
        Ok(self.objects.len() - 1)
    }

    /// `BINPERSID` with `('storage', storage_class, key, location, numel)`: loads the
    /// record `data/<key>` once per key. The location (`cpu`, `cuda:0`) does not matter:
    /// the bytes are in the archive.
    fn persistent_storage(&mut self, id: Id) -> Result<usize, CheckpointError> {
        let malformed = || corrupt("a persistent id is not ('storage', storage class, key, location, element count)".into());
        let Object::Tuple(fields) = &self.objects[id] else {
            return Err(malformed());
        };
        let [tag, class, key, _location, numel] = fields.as_slice() else {
            return Err(malformed());
        };
        let (Object::Str(tag), Object::Global(Global::StorageType(dtype)), Object::Str(key), Object::Int(numel)) =
            (&self.objects[*tag], &self.objects[*class], &self.objects[*key], &self.objects[*numel])
        else {
            return Err(malformed());
        };
        // torch numbers its storages; a long key would only make every lookup slow.
        if tag != "storage" || key.len() > MAX_STORAGE_KEY {
            return Err(malformed());
        }
        let numel = u64::try_from(*numel).map_err(|_| corrupt(format!("storage `{key}` has a negative element count")))?;
        if let Some(&index) = self.storage_by_key.get(key.as_str()) {
            let storage = &self.storages[index];
            if storage.dtype != *dtype || storage.numel != numel {
                return Err(corrupt(format!("storage `{key}` is described twice, differently")));
            }
            return Ok(index);
        }
        let storage = (self.load_storage)(key, *dtype, numel)?;
        self.storages.push(storage);
        self.storage_by_key.insert(key.clone(), self.storages.len() - 1);
        Ok(self.storages.len() - 1)
    }

    /// The arguments of `_rebuild_tensor_v2`, checked: sizes and strides non-negative and
    /// the furthest element inside the storage.
    fn tensor_view(&self, arguments: &[Id]) -> Result<View, CheckpointError> {
        let malformed = || corrupt("_rebuild_tensor_v2 is called with arguments it does not take".into());
        if !(6..=7).contains(&arguments.len()) {
            return Err(malformed());
        }
        let Object::Storage(storage) = self.objects[arguments[0]] else {
            return Err(malformed());
        };
        let Object::Int(offset) = self.objects[arguments[1]] else {
            return Err(malformed());
        };
        let record = &self.storages[storage].record;
        let invalid = |reason: String| CheckpointError::InvalidTensor { record: record.clone(), reason };
        let ints = |id: Id, what: &str| -> Result<Vec<i64>, CheckpointError> {
            let Object::Tuple(items) = &self.objects[id] else {
                return Err(malformed());
            };
            if items.len() > MAX_DIMENSIONS {
                return Err(invalid(format!("its {what} have {} dimensions (at most {MAX_DIMENSIONS})", items.len())));
            }
            items.iter().map(|&item| if let Object::Int(value) = self.objects[item] { Ok(value) } else { Err(malformed()) }).collect()
        };
        let sizes = ints(arguments[2], "sizes")?;
        let strides = ints(arguments[3], "strides")?;
        if sizes.len() != strides.len() {
            return Err(invalid(format!("{} sizes but {} strides", sizes.len(), strides.len())));
        }
        let non_negative = |values: &[i64], what: &str| -> Result<Vec<usize>, CheckpointError> {
            values.iter().map(|&value| usize::try_from(value).map_err(|_| invalid(format!("{what} {values:?} include a negative value")))).collect()
        };
        let view_sizes = non_negative(&sizes, "sizes")?;
        let view_strides = non_negative(&strides, "strides")?;
        let view_offset = usize::try_from(offset).map_err(|_| invalid(format!("storage offset {offset} is negative")))?;
        let overflow = || invalid(format!("sizes {sizes:?} with strides {strides:?} overflow"));
        let numel = view_sizes.iter().try_fold(1usize, |product, &size| product.checked_mul(size)).ok_or_else(overflow)?;
        if numel > 0 {
            let last_element = view_sizes
                .iter()
                .zip(&view_strides)
                .try_fold(view_offset, |last, (&size, &stride)| last.checked_add((size - 1).checked_mul(stride)?))
                .ok_or_else(overflow)?;
            let storage_numel = self.storages[storage].numel;
            if last_element as u64 >= storage_numel {
                return Err(CheckpointError::TensorOutOfBounds {
                    record: record.clone(),
                    sizes,
                    strides,
                    offset,
                    last_element: last_element as u64,
                    storage_numel,
                });
            }
        }
        Ok(View { storage, offset: view_offset, sizes: view_sizes, strides: view_strides })
    }

    /// Turns the arena object `id` into a [`Value`], copying tensors out of their
    /// storages, within `budget`.
    fn build(&self, id: Id, depth: usize, budget: &mut Budget) -> Result<Value, CheckpointError> {
        if depth > MAX_DEPTH {
            return Err(CheckpointError::TooLarge(format!("values nest more than {MAX_DEPTH} deep (or refer to themselves)")));
        }
        budget.values_left = budget
            .values_left
            .checked_sub(1)
            .ok_or_else(|| CheckpointError::TooLarge("shared references in the pickle expand to far more values than it holds".into()))?;
        let build_all =
            |items: &[Id], budget: &mut Budget| items.iter().map(|&item| self.build(item, depth + 1, budget)).collect::<Result<Vec<_>, _>>();
        Ok(match &self.objects[id] {
            Object::None => Value::None,
            Object::Bool(value) => Value::Bool(*value),
            Object::Int(value) => Value::Int(*value),
            Object::Float(value) => Value::Float(*value),
            Object::Str(value) => {
                budget.spend_bytes(value.len())?;
                Value::Str(value.clone())
            }
            Object::Bytes(value) => {
                budget.spend_bytes(value.len())?;
                Value::Bytes(value.clone())
            }
            Object::List(items) => Value::List(build_all(items, budget)?),
            Object::Tuple(items) => Value::Tuple(build_all(items, budget)?),
            Object::Dict(items) => {
                let mut built = Vec::with_capacity(items.len());
                for &(key, value) in items {
                    built.push((self.build(key, depth + 1, budget)?, self.build(value, depth + 1, budget)?));
                }
                Value::Dict(built)
            }
            Object::Tensor(view) => Value::Tensor(self.materialise(view, budget)?),
            Object::Global(global) => return Err(CheckpointError::Unsupported(format!("a class or function as a value ({})", global.python_name()))),
            Object::Storage(_) => return Err(CheckpointError::Unsupported("a bare storage (torch.save of a storage, not a tensor)".into())),
        })
    }

    /// Copies a view's elements in row-major order.
    fn materialise(&self, view: &View, budget: &mut Budget) -> Result<TensorData, CheckpointError> {
        let storage = &self.storages[view.storage];
        let element = storage.dtype.size();
        // `tensor_view` checked that the element count fits a usize and that every
        // element lies inside the storage, so every slice below is in range; the budget
        // refuses a byte count that overflows.
        let numel: usize = view.sizes.iter().product();
        budget.spend_bytes(numel.saturating_mul(element))?;
        let bytes: &[u8] = &storage.bytes;
        let mut data = Vec::with_capacity(numel * element);
        if numel > 0 {
            let contiguous = is_contiguous(&view.sizes, &view.strides);
            let (outer, run, run_stride) = match view.sizes.split_last() {
                Some(_) if contiguous => (&[][..], numel, 1),
                Some((&last, outer)) => (outer, last, view.strides[outer.len()]),
                None => (&[][..], 1, 1),
            };
            // An odometer over every dimension but the innermost run.
            let mut index = vec![0usize; outer.len()];
            loop {
                let start = view.offset + index.iter().zip(&view.strides).map(|(i, stride)| i * stride).sum::<usize>();
                if run_stride == 1 {
                    data.extend_from_slice(&bytes[start * element..(start + run) * element]);
                } else {
                    for step in 0..run {
                        let at = (start + step * run_stride) * element;
                        data.extend_from_slice(&bytes[at..at + element]);
                    }
                }
                let Some(dimension) = (0..outer.len()).rev().find(|&dimension| index[dimension] + 1 < outer[dimension]) else {
                    break;
                };
                index[dimension] += 1;
                index[dimension + 1..].fill(0);
            }
        }
        Ok(TensorData { dtype: storage.dtype, shape: view.sizes.clone(), data })
    }
}

/// Whether strides are those of a row-major tensor of these sizes (dimensions of size 1
/// may have any stride).
fn is_contiguous(sizes: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1;
    for (&size, &stride) in sizes.iter().zip(strides).rev() {
        if size != 1 && stride != expected {
            return false;
        }
        expected *= size;
    }
    true
}

/// A `LONG1`/`LONG4` payload: little-endian two's complement, as wide as needed.
fn little_endian_int(bytes: &[u8]) -> Result<i64, CheckpointError> {
    if bytes.len() > 8 {
        return Err(CheckpointError::Unsupported("an integer wider than 64 bits".into()));
    }
    let negative = bytes.last().is_some_and(|&byte| byte & 0x80 != 0);
    let mut buffer = if negative { [0xff; 8] } else { [0; 8] };
    buffer[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(buffer))
}

fn corrupt(detail: String) -> CheckpointError {
    CheckpointError::Corrupt(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes pickles opcode by opcode.
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn new() -> Pickle {
            Pickle(vec![opcode::PROTO, 2])
        }

        fn op(mut self, code: u8) -> Pickle {
            self.0.push(code);
            self
        }

        fn raw(mut self, bytes: &[u8]) -> Pickle {
            self.0.extend_from_slice(bytes);
            self
        }

        /// An int as `LONG1` with eight bytes.
        fn int(self, value: i64) -> Pickle {
            self.raw(&[opcode::LONG1, 8]).raw(&value.to_le_bytes())
        }

        fn text(self, text: &str) -> Pickle {
            self.raw(&[opcode::SHORT_BINUNICODE, text.len() as u8]).raw(text.as_bytes())
        }

        fn global(self, module: &str, name: &str) -> Pickle {
            self.op(opcode::GLOBAL).raw(format!("{module}\n{name}\n").as_bytes())
        }

        fn ints(self, values: &[i64]) -> Pickle {
            values.iter().fold(self.op(opcode::MARK), |pickle, &value| pickle.int(value)).op(opcode::TUPLE)
        }

        fn stop(self) -> Vec<u8> {
            self.op(opcode::STOP).0
        }
    }

    /// Runs a pickle whose storages are all `[0.0, 1.0, 2.0, 3.0]` in float32.
    fn run(pickle: &[u8]) -> Result<Value, CheckpointError> {
        unpickle(pickle, |key, dtype, numel| {
            let bytes: Vec<u8> = [0f32, 1.0, 2.0, 3.0].iter().flat_map(|value| value.to_le_bytes()).collect();
            assert_eq!((dtype, numel), (Dtype::F32, 4));
            Ok(Storage { dtype, numel, record: format!("archive/data/{key}"), bytes: Cow::Owned(bytes) })
        })
    }

    fn float_tensor(shape: &[usize], values: &[f32]) -> Value {
        Value::Tensor(TensorData { dtype: Dtype::F32, shape: shape.to_vec(), data: values.iter().flat_map(|value| value.to_le_bytes()).collect() })
    }

    /// `_rebuild_tensor_v2` of the four-float storage with these offset, sizes and strides.
    fn tensor_pickle(offset: i64, sizes: &[i64], strides: &[i64]) -> Vec<u8> {
        Pickle::new()
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(opcode::MARK)
            .op(opcode::MARK)
            .text("storage")
            .global("torch", "FloatStorage")
            .text("0")
            .text("cpu")
            .int(4)
            .op(opcode::TUPLE)
            .op(opcode::BINPERSID)
            .int(offset)
            .ints(sizes)
            .ints(strides)
            .op(opcode::NEWFALSE)
            .global("collections", "OrderedDict")
            .op(opcode::EMPTY_TUPLE)
            .op(opcode::REDUCE)
            .op(opcode::TUPLE)
            .op(opcode::REDUCE)
            .stop()
    }

    #[test]
    fn tensor_views_are_copied_or_refused_before_allocating() {
        type Check = fn(Result<Value, CheckpointError>) -> bool;
        let cases: &[(i64, &[i64], &[i64], Check)] = &[
            (0, &[2, 2], &[2, 1], |result| result.unwrap() == float_tensor(&[2, 2], &[0.0, 1.0, 2.0, 3.0])),
            (0, &[2, 2], &[1, 2], |result| result.unwrap() == float_tensor(&[2, 2], &[0.0, 2.0, 1.0, 3.0])),
            (1, &[3], &[1], |result| result.unwrap() == float_tensor(&[3], &[1.0, 2.0, 3.0])),
            (3, &[], &[], |result| result.unwrap() == float_tensor(&[], &[3.0])),
            (2, &[2, 3], &[0, 0], |result| result.unwrap() == float_tensor(&[2, 3], &[2.0; 6])),
            (9, &[0, 5], &[5, 1], |result| result.unwrap() == float_tensor(&[0, 5], &[])),
            (1, &[4], &[1], |result| matches!(result, Err(CheckpointError::TensorOutOfBounds { last_element: 4, storage_numel: 4, .. }))),
            (0, &[2], &[i64::MAX], |result| matches!(result, Err(CheckpointError::TensorOutOfBounds { .. }))),
            (0, &[4], &[i64::MAX], |result| matches!(result, Err(CheckpointError::InvalidTensor { reason, .. }) if reason.contains("overflow"))),
            (0, &[2], &[-1], |result| matches!(result, Err(CheckpointError::InvalidTensor { reason, .. }) if reason.contains("strides [-1]"))),
            (-1, &[1], &[1], |result| matches!(result, Err(CheckpointError::InvalidTensor { reason, .. }) if reason.contains("offset -1"))),
            (0, &[2, 2], &[1], |result| matches!(result, Err(CheckpointError::InvalidTensor { reason, .. }) if reason == "2 sizes but 1 strides")),
            // A broadcast of one element to 2^40 would allocate 4 TiB: refused by the budget.
            (0, &[1 << 40], &[0], |result| matches!(result, Err(CheckpointError::TooLarge(_)))),
            (0, &[1 << 62], &[0], |result| matches!(result, Err(CheckpointError::TooLarge(_)))),
            (
                0,
                &[1; 65],
                &[1; 65],
                |result| matches!(result, Err(CheckpointError::InvalidTensor { reason, .. }) if reason.contains("65 dimensions")),
            ),
        ];
        for (offset, sizes, strides, check) in cases {
            let result = run(&tensor_pickle(*offset, sizes, strides));
            let shown = format!("{result:?}");
            assert!(check(result), "offset {offset}, sizes {sizes:?}, strides {strides:?}: {shown}");
        }
    }

    #[test]
    fn containers_memoised_while_empty_are_seen_filled() {
        // outer = []; d = {} (memo 0); outer.append(d); d["k"] = 5 (through the memo); outer.append(d)
        let pickle = Pickle::new()
            .op(opcode::EMPTY_LIST)
            .op(opcode::EMPTY_DICT)
            .raw(&[opcode::BINPUT, 0])
            .op(opcode::APPEND)
            .raw(&[opcode::BINGET, 0])
            .text("k")
            .raw(&[opcode::BININT1, 5])
            .op(opcode::SETITEM)
            .op(opcode::APPEND)
            .stop();
        let filled = Value::Dict(vec![(Value::Str("k".into()), Value::Int(5))]);
        assert_eq!(run(&pickle).unwrap(), Value::List(vec![filled.clone(), filled]));
    }

    #[test]
    fn every_width_of_int_string_and_bytes() {
        let pickle = Pickle::new()
            .op(opcode::EMPTY_LIST)
            .op(opcode::MARK)
            .raw(&[opcode::BININT, 0xfe, 0xff, 0xff, 0xff])
            .raw(&[opcode::BININT2, 0x34, 0x12])
            .raw(&[opcode::LONG1, 0])
            .raw(&[opcode::LONG1, 2, 0x00, 0x80])
            .raw(&[opcode::LONG4, 1, 0, 0, 0, 0x7f])
            .raw(&[opcode::LONG1, 8, 0, 0, 0, 0, 0, 0, 0, 0x80])
            .raw(&[opcode::BINFLOAT])
            .raw(&(-0.5f64).to_be_bytes())
            .raw(&[opcode::BINUNICODE, 2, 0, 0, 0])
            .raw("é".as_bytes())
            .raw(&[opcode::BINUNICODE8, 1, 0, 0, 0, 0, 0, 0, 0, b'z'])
            .raw(&[opcode::SHORT_BINBYTES, 1, 7])
            .raw(&[opcode::BINBYTES, 1, 0, 0, 0, 8])
            .raw(&[opcode::BINBYTES8, 1, 0, 0, 0, 0, 0, 0, 0, 9])
            .raw(&[opcode::BYTEARRAY8, 0, 0, 0, 0, 0, 0, 0, 0])
            .raw(&[opcode::FRAME, 0, 0, 0, 0, 0, 0, 0, 0])
            .op(opcode::NONE)
            .op(opcode::MEMOIZE)
            .raw(&[opcode::LONG_BINGET, 0, 0, 0, 0])
            .op(opcode::APPENDS)
            .stop();
        let expected = Value::List(vec![
            Value::Int(-2),
            Value::Int(0x1234),
            Value::Int(0),
            Value::Int(-32768),
            Value::Int(127),
            Value::Int(i64::MIN),
            Value::Float(-0.5),
            Value::Str("é".into()),
            Value::Str("z".into()),
            Value::Bytes(vec![7]),
            Value::Bytes(vec![8]),
            Value::Bytes(vec![9]),
            Value::Bytes(vec![]),
            Value::None,
            Value::None,
        ]);
        assert_eq!(run(&pickle).unwrap(), expected);
    }

    #[test]
    fn globals_outside_the_allow_list_stop_reading_at_their_name() {
        let forbidden = |result: Result<Value, CheckpointError>, expected_module: &str, expected_name: &str| match result {
            Err(CheckpointError::ForbiddenGlobal { module, name }) => assert_eq!((module.as_str(), name.as_str()), (expected_module, expected_name)),
            other => panic!("{expected_module}.{expected_name}: {other:?}"),
        };
        forbidden(run(&Pickle::new().global("os", "system").text("true").op(opcode::TUPLE1).op(opcode::REDUCE).stop()), "os", "system");
        forbidden(run(&Pickle::new().text("builtins").text("eval").op(opcode::STACK_GLOBAL).stop()), "builtins", "eval");
        forbidden(run(&Pickle::new().global("torch", "load").stop()), "torch", "load");
        let unsupported = |pickle: Vec<u8>, what: &str| match run(&pickle) {
            Err(CheckpointError::Unsupported(message)) => assert!(message.contains(what), "{message}"),
            other => panic!("{what}: {other:?}"),
        };
        unsupported(Pickle::new().global("torch._utils", "_rebuild_qtensor").stop(), "_rebuild_qtensor");
        unsupported(Pickle::new().global("torch", "ComplexFloatStorage").stop(), "torch.ComplexFloatStorage");
        unsupported(Pickle::new().global("collections", "OrderedDict").stop(), "a class or function as a value (collections.OrderedDict)");
        assert_eq!(run(&Pickle::new().global("torch", "float16").stop()).unwrap(), Value::Str("torch.float16".into()));
    }

    #[test]
    fn shared_references_may_not_expand_without_bound() {
        // A list that contains itself.
        let cycle = Pickle::new().op(opcode::EMPTY_LIST).raw(&[opcode::BINPUT, 0, opcode::BINGET, 0]).op(opcode::APPEND).stop();
        assert!(matches!(run(&cycle), Err(CheckpointError::TooLarge(message)) if message.contains("200 deep")), "a cycle");
        // l0 = [], l(i) = [l(i-1), l(i-1)]: 2^40 values from a few hundred bytes.
        let mut bomb = Pickle::new().op(opcode::EMPTY_LIST).raw(&[opcode::BINPUT, 0]);
        for level in 1..=40u8 {
            bomb = bomb
                .op(opcode::EMPTY_LIST)
                .raw(&[opcode::BINPUT, level, opcode::MARK, opcode::BINGET, level - 1, opcode::BINGET, level - 1])
                .op(opcode::APPENDS);
        }
        assert!(matches!(run(&bomb.stop()), Err(CheckpointError::TooLarge(message)) if message.contains("shared references")), "a memo bomb");
        // One 60 kB string referenced 2000 times: 120 MB of copies from a 64 kB pickle.
        let mut strings = Pickle::new().op(opcode::EMPTY_LIST).op(opcode::MARK).raw(&[opcode::BINUNICODE, 0x60, 0xea, 0, 0]).raw(&[b'x'; 60_000]);
        strings = strings.raw(&[opcode::BINPUT, 0]).raw(&[opcode::BINGET, 0].repeat(2000)).op(opcode::APPENDS);
        assert!(matches!(run(&strings.stop()), Err(CheckpointError::TooLarge(message)) if message.contains("four times")), "repeated strings");
        // One memoised string encoded to bytes over and over (the string, the encoding and
        // the function stay on the stack below the list).
        let mut encodes = Pickle::new().text(&"y".repeat(100)).raw(&[opcode::BINPUT, 0]).text("latin1").raw(&[opcode::BINPUT, 1]);
        encodes = encodes.global("_codecs", "encode").raw(&[opcode::BINPUT, 2]).op(opcode::EMPTY_LIST).op(opcode::MARK);
        for _ in 0..10 {
            encodes = encodes.raw(&[opcode::BINGET, 2, opcode::BINGET, 0, opcode::BINGET, 1, opcode::TUPLE2, opcode::REDUCE]);
        }
        assert!(
            matches!(run(&encodes.op(opcode::APPENDS).stop()), Err(CheckpointError::TooLarge(message)) if message.contains("bytes objects")),
            "repeated encodes"
        );
    }

    #[test]
    fn malformed_pickles_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "ends inside an opcode"),
            (b"\x80\x02", "ends inside an opcode"),
            (b"\x80\x02X\xff\xff\xff\xffab", "ends inside an opcode"),
            (b"\x80\x02X\x01\x00\x00\x00\xff.", "is not UTF-8"),
            (b"\x80\x02a.", "pops an empty stack"),
            (b"\x80\x02N(.", "pops an empty stack"),
            (b"\x80\x02}N(s.", "pops an empty stack"),
            (b"\x80\x02t.", "closes a MARK it never opened"),
            (b"\x80\x02h\x05.", "memo entry 5 is read at byte 2 before it is written"),
            (b"\x80\x02](NNu.", "SETITEMS on a list"),
            (b"\x80\x02}(Nu.", "odd number of items"),
            (b"\x80\x02]}b.", "BUILD at byte 4 sets attributes of a list"),
            (b"\x80\x02N)R.", "the pickle calls a None"),
            (b"\x80\x02ctorch\nSize\nNR.", "torch.Size is called with a None, not a tuple"),
            (b"\x80\x02ctorch\nfoo", "ends inside a GLOBAL name"),
            (b"\x80\x02NQ.", "a persistent id is not"),
        ];
        for (pickle, message) in cases {
            match run(pickle) {
                Err(CheckpointError::Corrupt(detail)) => assert!(detail.contains(message), "{pickle:?}: {detail}"),
                other => panic!("{pickle:?}: {other:?}"),
            }
        }
        let unsupported: &[(&[u8], &str)] = &[
            (b"\x80\x06N.", "pickle protocol 6"),
            (b"\x80\x02cos\nsystem\n", "os"),
            (b"\x80\x02i", "pickle opcode 0x69"),
            (b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", "wider than 64 bits"),
        ];
        for (pickle, message) in unsupported {
            let error = run(pickle).unwrap_err();
            assert!(error.to_string().contains(message), "{pickle:?}: {error}");
        }
    }
}
