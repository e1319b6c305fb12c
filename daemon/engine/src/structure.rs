//! The module tree of a TorchScript model (read through the C++ shim, since tch has
//! no API for it) and the summary rows built from it.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::Path;

extern "C" {
    fn layerlens_module_tree(path: *const c_char, out_json: *mut *mut c_char, out_error: *mut *mut c_char) -> c_int;
    fn layerlens_free_string(text: *mut c_char);
}

/// One module instance of a TorchScript model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModuleInfo {
    /// Dotted path from the root (`layer1.0.conv1`); the root is "".
    pub path: String,
    /// TorchScript's qualified type name, e.g. `__torch__.torch.nn.modules.conv.Conv2d`.
    #[serde(rename = "type")]
    pub qualified_type: String,
    /// Parameters this module owns directly.
    pub params: Vec<ParamInfo>,
    /// Buffers this module owns directly (running statistics, ...).
    #[serde(default)]
    pub buffers: Vec<BufferInfo>,
    /// Attributes that describe the module (kernel_size, stride, eps, ...), as JSON
    /// values. Traced modules keep few of them.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BufferInfo {
    pub name: String,
    pub numel: u64,
    /// Bytes per element (8 for a BatchNorm's int64 `num_batches_tracked`).
    #[serde(default = "four")]
    pub element_size: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub numel: u64,
    /// Bytes per element (4 for float32).
    #[serde(default = "four")]
    pub element_size: u64,
    pub requires_grad: bool,
    /// Identity of the tensor in the loaded module: tied parameters share it.
    pub storage: u64,
}

fn four() -> u64 {
    4
}

/// Bytes the model's parameters and buffers occupy: every tensor of the module tree
/// once (tied parameters share one tensor and count once), numel × element size.
/// This is what keeping the model resident costs, before any working memory.
pub fn resident_bytes(tree: &[ModuleInfo]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0;
    for module in tree {
        for param in &module.params {
            if seen.insert(param.storage) {
                bytes += param.numel * param.element_size;
            }
        }
        bytes += module.buffers.iter().map(|buffer| buffer.numel * buffer.element_size).sum::<u64>();
    }
    bytes
}

/// Reads the module tree of a TorchScript file.
pub fn module_tree(path: &Path) -> Result<Vec<ModuleInfo>> {
    let path_text = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::bad_input(format!("model path {} contains a NUL byte", path.display())))?;
    let mut json: *mut c_char = std::ptr::null_mut();
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the shim catches every C++ exception, and hands back malloc'd strings
    // (or null) that we copy and free exactly once.
    let status = unsafe { layerlens_module_tree(path_text.as_ptr(), &mut json, &mut error) };
    let take = |text: *mut c_char| -> Option<String> {
        if text.is_null() {
            return None;
        }
        let owned = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
        unsafe { layerlens_free_string(text) };
        Some(owned)
    };
    let json = take(json);
    let error = take(error);
    if status != 0 {
        let reason = crate::error::torch_reason(&error.unwrap_or_default());
        return Err(Error::bad_input(format!("reading the module tree: {reason}")));
    }
    let json = json.ok_or_else(|| Error::internal("the shim returned no module tree"))?;
    serde_json::from_str(&json).map_err(|error| Error::internal(format!("the shim's module tree is not valid JSON: {error}")))
}

/// One row of a model summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub path: String,
    /// Type name for people: `torch.nn.Conv2d`, `torchvision.models.resnet.BasicBlock`.
    pub type_name: String,
    /// 0 for the root, 1 for its children, and so on.
    pub depth: u32,
    /// Parameters of this module and everything below it, tied ones counted once.
    pub num_params: u64,
    pub trainable_params: u64,
    /// Parameters this module owns directly.
    pub own_params: u64,
    /// Attributes as (name, JSON value) pairs.
    pub attributes: Vec<(String, String)>,
    pub num_buffers: u64,
    pub own_buffers: u64,
}

/// A module's describing attributes as (name, JSON text) pairs, sorted by name.
pub fn attribute_pairs(module: &ModuleInfo) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = module.attributes.iter().map(|(name, value)| (name.clone(), value.to_string())).collect();
    pairs.sort();
    pairs
}

/// Buffer elements of the module at `path` and below.
pub fn count_buffers(modules: &[ModuleInfo], path: &str) -> u64 {
    let prefix = format!("{path}.");
    modules
        .iter()
        .filter(|module| path.is_empty() || module.path == path || module.path.starts_with(&prefix))
        .flat_map(|module| module.buffers.iter().map(|buffer| buffer.numel))
        .sum()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub rows: Vec<SummaryRow>,
    pub total_params: u64,
    pub trainable_params: u64,
}

/// Builds summary rows (pre-order, as `named_modules` yields them), keeping rows up to
/// `max_depth` (`None`: all). Totals always cover the whole model.
pub fn summarize(modules: &[ModuleInfo], max_depth: Option<u32>) -> Summary {
    let rows: Vec<SummaryRow> = modules
        .iter()
        .map(|module| {
            let depth = if module.path.is_empty() { 0 } else { module.path.split('.').count() as u32 };
            let (num_params, trainable_params) = count_params(modules, &module.path);
            SummaryRow {
                path: module.path.clone(),
                type_name: readable_type_name(&module.qualified_type),
                depth,
                num_params,
                trainable_params,
                own_params: module.params.iter().map(|param| param.numel).sum(),
                attributes: attribute_pairs(module),
                num_buffers: count_buffers(modules, &module.path),
                own_buffers: module.buffers.iter().map(|buffer| buffer.numel).sum(),
            }
        })
        .collect();
    let (total_params, trainable_params) = count_params(modules, "");
    let rows = rows.into_iter().filter(|row| max_depth.is_none_or(|max| row.depth <= max)).collect();
    Summary { rows, total_params, trainable_params }
}

/// (all, trainable) parameters of the module at `path` and its descendants; a tensor
/// reachable under two names is counted once.
pub fn count_params(modules: &[ModuleInfo], path: &str) -> (u64, u64) {
    let prefix = format!("{path}.");
    let mut seen = HashSet::new();
    let (mut total, mut trainable) = (0, 0);
    for module in modules.iter().filter(|module| path.is_empty() || module.path == path || module.path.starts_with(&prefix)) {
        for param in &module.params {
            if seen.insert(param.storage) {
                total += param.numel;
                if param.requires_grad {
                    trainable += param.numel;
                }
            }
        }
    }
    (total, trainable)
}

/// Turns TorchScript's qualified names into the names people write:
/// `__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d` → `torch.nn.Conv2d`.
pub fn readable_type_name(qualified: &str) -> String {
    let parts: Vec<&str> = qualified.split('.').filter(|part| *part != "__torch__" && !part.starts_with("___torch_mangle_")).collect();
    // torch.nn classes live in torch.nn.modules.<file>; people know them as torch.nn.X.
    if parts.len() >= 4 && parts[0] == "torch" && parts[1] == "nn" && parts[2] == "modules" {
        return format!("torch.nn.{}", parts[parts.len() - 1]);
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_type_names() {
        let cases = [
            ("__torch__.torch.nn.modules.conv.Conv2d", "torch.nn.Conv2d"),
            ("__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d", "torch.nn.Conv2d"),
            ("__torch__.torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.BasicBlock"),
            ("__torch__.DigitsCNN", "DigitsCNN"),
        ];
        for (qualified, expected) in cases {
            assert_eq!(readable_type_name(qualified), expected);
        }
    }

    fn param(numel: u64, storage: u64, requires_grad: bool) -> ParamInfo {
        ParamInfo { name: "weight".into(), shape: vec![numel as i64], numel, element_size: 4, requires_grad, storage }
    }

    #[test]
    fn tied_parameters_count_once_and_depth_filters_rows() {
        let modules = vec![
            ModuleInfo { path: "".into(), qualified_type: "__torch__.Net".into(), params: vec![], buffers: vec![], attributes: Default::default() },
            ModuleInfo {
                path: "encoder".into(),
                qualified_type: "__torch__.torch.nn.modules.linear.Linear".into(),
                params: vec![param(12, 1, true), param(3, 2, false)],
                buffers: vec![],
                attributes: Default::default(),
            },
            ModuleInfo {
                path: "decoder".into(),
                qualified_type: "__torch__.torch.nn.modules.linear.Linear".into(),
                params: vec![param(12, 1, true)],
                buffers: vec![],
                attributes: Default::default(),
            },
            ModuleInfo {
                path: "decoder.inner".into(),
                qualified_type: "__torch__.torch.nn.modules.linear.Linear".into(),
                params: vec![param(5, 3, true)],
                buffers: vec![],
                attributes: Default::default(),
            },
        ];
        let summary = summarize(&modules, None);
        assert_eq!((summary.total_params, summary.trainable_params), (20, 17));
        let decoder = summary.rows.iter().find(|row| row.path == "decoder").unwrap();
        assert_eq!((decoder.num_params, decoder.own_params, decoder.depth), (17, 12, 1));
        let shallow = summarize(&modules, Some(1));
        assert_eq!(shallow.rows.len(), 3);
        assert_eq!(shallow.total_params, 20);
    }
}
