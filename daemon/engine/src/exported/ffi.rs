//! The boxed operator call of `csrc/ops.cpp`: find an operator's schema once, call it
//! many times with arguments in schema order.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

/// One argument as `csrc/ops.cpp` reads it (`layerlens_op_arg`).
#[repr(C)]
pub struct OpArg {
    pub kind: i32,
    pub int_value: i64,
    pub float_value: f64,
    pub ints: *const i64,
    pub floats: *const f64,
    pub tensor: *mut C_tensor,
    pub tensors: *const *mut C_tensor,
    pub len: usize,
    pub text: *const c_char,
}

/// One result (`layerlens_op_result`).
#[repr(C)]
struct OpResult {
    kind: i32,
    tensor: *mut C_tensor,
    int_value: i64,
    float_value: f64,
    tensors: *mut *mut C_tensor,
    len: usize,
}

pub mod arg_kind {
    pub const DEFAULT: i32 = 0;
    pub const NONE: i32 = 1;
    pub const TENSOR: i32 = 2;
    pub const INT: i32 = 3;
    pub const FLOAT: i32 = 4;
    pub const BOOL: i32 = 5;
    pub const INTS: i32 = 6;
    pub const FLOATS: i32 = 7;
    pub const BOOLS: i32 = 8;
    pub const TENSORS: i32 = 9;
    pub const OPTIONAL_TENSORS: i32 = 10;
    pub const STRING: i32 = 11;
    pub const SCALAR_TYPE: i32 = 12;
    pub const LAYOUT: i32 = 13;
    pub const DEVICE: i32 = 14;
    pub const MEMORY_FORMAT: i32 = 15;
}

impl OpArg {
    pub fn new(kind: i32) -> OpArg {
        OpArg {
            kind,
            int_value: 0,
            float_value: 0.0,
            ints: std::ptr::null(),
            floats: std::ptr::null(),
            tensor: std::ptr::null_mut(),
            tensors: std::ptr::null(),
            len: 0,
            text: std::ptr::null(),
        }
    }
}

extern "C" {
    fn layerlens_op_find(name: *const c_char, overload: *const c_char, out_schema: *mut *mut c_char, out_error: *mut *mut c_char) -> *mut c_void;
    fn layerlens_op_free(handle: *mut c_void);
    fn layerlens_free_string(text: *mut c_char);
    fn layerlens_op_free_tensor_array(tensors: *mut *mut C_tensor);
    fn layerlens_op_call(
        handle: *mut c_void,
        args: *const OpArg,
        n_args: usize,
        out: *mut OpResult,
        max_out: usize,
        n_out: *mut usize,
        out_error: *mut *mut c_char,
    ) -> c_int;
}

/// An operator argument as the schema declares it.
#[derive(Debug, Clone, Deserialize)]
pub struct SchemaArgument {
    pub name: String,
    pub has_default: bool,
    #[allow(dead_code)]
    pub kwarg_only: bool,
    pub mutable: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Schema {
    pub arguments: Vec<SchemaArgument>,
    pub returns: Vec<String>,
}

/// What one call returned, per schema return.
pub enum OpValue {
    None,
    Tensor(Tensor),
    Int(i64),
    Float(f64),
    Bool(bool),
    Tensors(Vec<Tensor>),
    Other,
}

/// A resolved operator (`aten::conv2d` overload ""), owned.
pub struct Operator {
    handle: *mut c_void,
    pub schema: Schema,
}

// SAFETY: an OperatorHandle is a pointer into the dispatcher's global table, valid on
// any thread for the life of the process.
unsafe impl Send for Operator {}
unsafe impl Sync for Operator {}

impl Drop for Operator {
    fn drop(&mut self) {
        // SAFETY: the handle came from layerlens_op_find and is freed once.
        unsafe { layerlens_op_free(self.handle) };
    }
}

impl Operator {
    /// Looks up `namespace::name` with `overload` ("" for `.default`); None when the
    /// dispatcher does not know it.
    pub fn find(qualified_name: &str, overload: &str) -> Result<Option<Operator>> {
        let name = CString::new(qualified_name).map_err(|_| Error::bad_input("operator name contains a NUL byte"))?;
        let overload_text = CString::new(overload).map_err(|_| Error::bad_input("operator overload contains a NUL byte"))?;
        let mut schema: *mut c_char = std::ptr::null_mut();
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C strings; the shim catches every exception.
        let handle = unsafe { layerlens_op_find(name.as_ptr(), overload_text.as_ptr(), &mut schema, &mut error) };
        if handle.is_null() {
            drop(crate::taps::take_error(error));
            return Ok(None);
        }
        // SAFETY: a malloc'd NUL-terminated string from the shim, freed once here.
        let schema_text = unsafe { std::ffi::CStr::from_ptr(schema) }.to_string_lossy().into_owned();
        unsafe { layerlens_free_string(schema) };
        let schema: Schema = serde_json::from_str(&schema_text).map_err(|error| Error::internal(format!("schema of {qualified_name}: {error}")))?;
        Ok(Some(Operator { handle, schema }))
    }

    /// Calls the operator; `args` are in schema order (missing trailing ones take
    /// their defaults).
    pub fn call(&self, args: &[OpArg]) -> std::result::Result<Vec<OpValue>, String> {
        let max_out = self.schema.returns.len().max(1);
        let mut results: Vec<OpResult> = (0..max_out)
            .map(|_| OpResult { kind: 0, tensor: std::ptr::null_mut(), int_value: 0, float_value: 0.0, tensors: std::ptr::null_mut(), len: 0 })
            .collect();
        let mut count = 0usize;
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the argument pointers stay valid for the call (the caller keeps the
        // buffers alive); results are filled with new tensors we own.
        let status = unsafe { layerlens_op_call(self.handle, args.as_ptr(), args.len(), results.as_mut_ptr(), max_out, &mut count, &mut error) };
        if status != 0 {
            return Err(crate::taps::take_error(error));
        }
        Ok(results
            .into_iter()
            .take(count)
            .map(|result| match result.kind {
                0 => OpValue::None,
                // SAFETY: new at::Tensor* owned from here on.
                1 => OpValue::Tensor(unsafe { Tensor::from_ptr(result.tensor) }),
                2 => OpValue::Int(result.int_value),
                3 => OpValue::Float(result.float_value),
                4 => OpValue::Bool(result.int_value != 0),
                5 => {
                    // SAFETY: an array of `len` new tensors, the array freed by the shim.
                    let tensors = (0..result.len).map(|index| unsafe { Tensor::from_ptr(*result.tensors.add(index)) }).collect();
                    unsafe { layerlens_op_free_tensor_array(result.tensors) };
                    OpValue::Tensors(tensors)
                }
                _ => OpValue::Other,
            })
            .collect())
    }
}
