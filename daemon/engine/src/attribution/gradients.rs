//! The one gradient routine. Every gradient method asks for d output[row, target]
//! / d inputs over a (possibly virtual) batch of rows; this routine runs those rows
//! in chunks sized to the memory budget, splits a chunk in half and retries when the
//! device runs out of memory, and hands each chunk's gradients to the caller. Rows
//! are independent (eval mode), so the result equals the unchunked computation.

use super::progress::{Progress, ProgressUpdate};
use super::{torch_error, Context, MethodResult};
use crate::error::{ErrorKind, Result};
use crate::model::LoadedModel;
use tch::{Kind, Tensor};

/// How rows are grouped into passes, and what was run.
#[derive(Debug, Clone)]
pub struct Chunking {
    /// Working memory one pass may use, in bytes.
    pub budget_bytes: u64,
    /// Estimated working memory of one row's forward and backward pass.
    pub bytes_per_row: u64,
    /// A cap from the request (`internal_batch_size`).
    pub max_rows: Option<usize>,
    /// Rows evaluated (forward, or forward + backward) so far.
    pub rows_evaluated: u64,
    /// Forward(+backward) calls made so far.
    pub passes: u64,
    /// Told after every pass; stops the request when it says so (progress.rs).
    pub progress: Option<Progress>,
    /// Names the part of a composite request that runs now (a sanity check's
    /// randomised layer), for progress reports.
    pub stage: Option<String>,
}

impl Chunking {
    pub fn new(budget_bytes: u64, bytes_per_row: u64) -> Chunking {
        Chunking { budget_bytes, bytes_per_row: bytes_per_row.max(1), max_rows: None, rows_evaluated: 0, passes: 0, progress: None, stage: None }
    }

    /// A fresh chunking for a sub-request of the same request (same budget, progress
    /// handle and stage), whose pass counts continue from this one's.
    pub(crate) fn continued(&self) -> Chunking {
        Chunking { max_rows: None, ..self.clone() }
    }

    /// Tells the progress handle where the current phase stands; `Err(Cancelled)`
    /// when it says stop.
    fn report(&self, with_backward: bool, rows_done: usize, total_rows: usize, rows_per_pass: usize) -> Result<()> {
        let Some(progress) = &self.progress else { return Ok(()) };
        let kind = if with_backward { "gradient passes" } else { "forward passes" };
        let remaining = total_rows.saturating_sub(rows_done).div_ceil(rows_per_pass.max(1)) as u64;
        progress.check(&ProgressUpdate {
            passes_done: self.passes,
            passes_total: Some(self.passes + remaining),
            rows_done: rows_done as u64,
            rows_total: total_rows as u64,
            phase: match &self.stage {
                Some(stage) => format!("{stage}: {kind}"),
                None => kind.to_string(),
            },
        })
    }

    /// Rows per pass; forward-only passes keep no activations for backward and
    /// take twice as many.
    pub(crate) fn rows_per_chunk(&self, with_backward: bool) -> usize {
        let per_row = if with_backward { self.bytes_per_row } else { self.bytes_per_row / 2 }.max(1);
        let rows = (self.budget_bytes / per_row).max(1) as usize;
        self.max_rows.map_or(rows, |cap| rows.min(cap.max(1)))
    }
}

/// What gradients are taken with respect to.
#[derive(Clone, Copy)]
pub enum Wrt {
    /// The model's inputs.
    Inputs,
    /// The output of one module (tap `index` of the model's tapped copy).
    Layer { index: usize },
}

/// Calls `rows(start, end)` for consecutive row ranges covering `0..total_rows` (one
/// tensor per model input, `end - start` rows each), computes the gradient of
/// `output[row, targets[row]]` for each row, and hands `(start, gradients)` to
/// `consume`.
pub fn for_each_gradient_chunk(
    model: &LoadedModel,
    chunking: &mut Chunking,
    targets: &[i64],
    rows: impl Fn(usize, usize) -> Result<Vec<Tensor>>,
    mut consume: impl FnMut(usize, Vec<Tensor>) -> Result<()>,
) -> Result<()> {
    for_each_gradient_chunk_wrt(model, Wrt::Inputs, chunking, targets, rows, |start, gradients, _| consume(start, gradients))
}

/// The general form: gradients with respect to the inputs or to a layer's output;
/// for a layer, `consume` also gets the layer's output (its activation).
pub fn for_each_gradient_chunk_wrt(
    model: &LoadedModel,
    wrt: Wrt,
    chunking: &mut Chunking,
    targets: &[i64],
    rows: impl Fn(usize, usize) -> Result<Vec<Tensor>>,
    mut consume: impl FnMut(usize, Vec<Tensor>, Option<Tensor>) -> Result<()>,
) -> Result<()> {
    in_chunks(
        chunking,
        targets.len(),
        1,
        true,
        |start, end| gradient_pass(model, wrt, rows(start, end)?, &targets[start..end]),
        |start, (gradients, activation)| consume(start, gradients, activation),
    )
}

/// The same for forward passes without gradients: `consume(start, selected)` gets
/// `output[row, targets[row]]` for each row of the chunk. Chunks hold whole groups
/// of `align` rows (a perturbation method's copies of one batch).
pub fn for_each_forward_chunk(
    model: &LoadedModel,
    chunking: &mut Chunking,
    targets: &[i64],
    align: usize,
    rows: impl Fn(usize, usize) -> Result<Vec<Tensor>>,
    mut consume: impl FnMut(usize, Tensor) -> Result<()>,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    in_chunks(
        chunking,
        targets.len(),
        align,
        false,
        |start, end| model.forward(&rows(start, end)?).and_then(|output| select(&output, &targets[start..end])),
        &mut consume,
    )
}

/// The one chunking mechanism: runs `pass(start, end)` over consecutive row ranges of
/// `0..total_rows`, as many rows at a time as the memory budget allows (whole groups
/// of `align`), halving the chunk and retrying when a pass runs out of memory, and
/// hands each successful pass's result to `consume(start, result)`, so a retried chunk
/// is never consumed twice. The progress handle hears of the phase before its first
/// pass and after every pass, and can stop it there.
pub(crate) fn in_chunks<T>(
    chunking: &mut Chunking,
    total_rows: usize,
    align: usize,
    with_backward: bool,
    mut pass: impl FnMut(usize, usize) -> Result<T>,
    mut consume: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    let align = align.max(1);
    let whole = |rows: usize| (rows / align).max(1) * align;
    let mut size = whole(chunking.rows_per_chunk(with_backward).min(total_rows));
    let mut start = 0;
    chunking.report(with_backward, 0, total_rows, size)?;
    while start < total_rows {
        let end = (start + size).min(total_rows);
        match pass(start, end) {
            Ok(result) => {
                chunking.rows_evaluated += (end - start) as u64;
                chunking.passes += 1;
                consume(start, result)?;
                start = end;
                chunking.report(with_backward, start, total_rows, size)?;
            }
            // Out of memory: what the pass held is dropped; retry smaller.
            Err(error) if error.kind == ErrorKind::OutOfMemory && size > align => {
                size = whole(size / 2);
                tracing::warn!(rows = size, "out of memory; retrying in smaller chunks");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Gradients of `output[row, targets[row]]` for every row, and the model's output for
/// the inputs, taken from the same passes (saliency with explicit targets needs no
/// separate forward pass for its output).
pub fn gradients_with_output(model: &LoadedModel, chunking: &mut Chunking, inputs: &[Tensor], targets: &[i64]) -> Result<(Vec<Tensor>, Tensor)> {
    let mut pieces: Vec<Vec<Tensor>> = (0..inputs.len()).map(|_| Vec::new()).collect();
    let mut outputs = Vec::new();
    for_each_gradient_chunk_wrt(
        model,
        Wrt::Inputs,
        chunking,
        targets,
        |start, end| Ok(inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect()),
        |_, gradients, output| {
            for (piece, gradient) in pieces.iter_mut().zip(gradients) {
                piece.push(gradient);
            }
            outputs.extend(output);
            Ok(())
        },
    )?;
    let gradients = pieces.iter().map(|piece| Tensor::f_cat(piece, 0).map_err(torch_error("joining gradients"))).collect::<Result<_>>()?;
    let output = Tensor::f_cat(&outputs, 0).map_err(torch_error("joining outputs"))?;
    Ok((gradients, output))
}

/// The model's output for every row of a batch, without gradients, in chunks like
/// every other pass (so a batch too large for one pass is split, not refused).
pub fn forward_output(model: &LoadedModel, chunking: &mut Chunking, inputs: &[Tensor]) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let rows = inputs[0].size()[0].max(0) as usize;
    let mut pieces = Vec::new();
    // The output's pass comes before the method's phases and is not one of them:
    // progress reports (and their stop checks) start with the method's own passes.
    let progress = chunking.progress.take();
    let passes = in_chunks(
        chunking,
        rows,
        1,
        false,
        |start, end| model.forward(&inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect::<Vec<_>>()),
        |_, output| {
            pieces.push(output);
            Ok(())
        },
    );
    chunking.progress = progress;
    passes?;
    // One pass (the usual case) keeps the output as the model returned it, so a
    // malformed output is reported by the shape check, not by the join.
    if pieces.len() == 1 {
        return Ok(pieces.remove(0));
    }
    Tensor::f_cat(&pieces, 0).map_err(torch_error("joining outputs"))
}

/// `output[row, targets[row]]` for every row of one batch of inputs, chunked.
pub fn forward_selected(model: &LoadedModel, chunking: &mut Chunking, inputs: &[Tensor], targets: &[i64]) -> Result<Tensor> {
    let mut pieces = Vec::new();
    for_each_forward_chunk(
        model,
        chunking,
        targets,
        1,
        |start, end| Ok(inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect()),
        |_, selected| {
            pieces.push(selected);
            Ok(())
        },
    )?;
    Tensor::f_cat(&pieces, 0).map_err(torch_error("joining forward outputs"))
}

/// Gradients of `output[row, targets[row]]` for every row of a batch, chunked.
pub fn gradients(model: &LoadedModel, chunking: &mut Chunking, inputs: &[Tensor], targets: &[i64]) -> Result<Vec<Tensor>> {
    let mut pieces: Vec<Vec<Tensor>> = (0..inputs.len()).map(|_| Vec::new()).collect();
    for_each_gradient_chunk(
        model,
        chunking,
        targets,
        |start, end| Ok(inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect()),
        |_, gradients| {
            for (piece, gradient) in pieces.iter_mut().zip(gradients) {
                piece.push(gradient);
            }
            Ok(())
        },
    )?;
    pieces.iter().map(|piece| Tensor::f_cat(piece, 0).map_err(torch_error("joining gradients"))).collect()
}

fn select(output: &Tensor, targets: &[i64]) -> Result<Tensor> {
    super::check_targets(output, targets.len() as i64, targets)?;
    let index = Tensor::from_slice(targets).to_device(output.device()).view([-1, 1]);
    output
        .f_gather(1, &index, false)
        .and_then(|picked| picked.f_view([-1]))
        .and_then(|picked| picked.f_to_kind(Kind::Float))
        .map_err(torch_error("selecting the target outputs"))
}

/// One forward and backward pass with the inputs on the autograd path; the sum of
/// the selected outputs is backpropagated (rows are independent, so each row's
/// gradient is that of its own output, as in Captum's `compute_gradients`).
fn gradient_pass(model: &LoadedModel, wrt: Wrt, inputs: Vec<Tensor>, targets: &[i64]) -> Result<(Vec<Tensor>, Option<Tensor>)> {
    tch::with_grad(|| gradient_pass_with_grad(model, wrt, inputs, targets))
}

fn gradient_pass_with_grad(model: &LoadedModel, wrt: Wrt, inputs: Vec<Tensor>, targets: &[i64]) -> Result<(Vec<Tensor>, Option<Tensor>)> {
    if let Wrt::Layer { index } = wrt {
        let (output, mut taps) = model.tapped()?.forward(&inputs)?;
        let tap = taps.swap_remove(index).ok_or_else(|| crate::Error::bad_input("the layer's output is not a single tensor"))?;
        if !tap.requires_grad() {
            return Err(crate::Error::bad_input("the model's output does not depend differentiably on this layer's output"));
        }
        let selected = select(&output, targets)?.f_sum(Kind::Float).map_err(torch_error("summing the target outputs"))?;
        let gradients = Tensor::f_run_backward(&[selected], &[&tap], false, false).map_err(torch_error("computing layer gradients"))?;
        return Ok((gradients, Some(tap.detach())));
    }
    let inputs: Vec<Tensor> = inputs.iter().map(|input| input.detach().set_requires_grad(true)).collect();
    let output = model.forward(&inputs)?;
    let selected = select(&output, targets)?.f_sum(Kind::Float).map_err(torch_error("summing the target outputs"))?;
    let input_refs: Vec<&Tensor> = inputs.iter().collect();
    // For input gradients the second part is the model's output (for a layer it is
    // the layer's activation, above).
    let output = output.detach();
    Tensor::f_run_backward(&[selected], &input_refs, false, false).map(|gradients| (gradients, Some(output))).map_err(|error| {
        let error = crate::Error::from_torch(error, ErrorKind::Internal, "computing input gradients");
        if error.message.contains("does not require grad") || error.message.contains("not have a grad_fn") {
            crate::Error::bad_input(
                "the model's output does not depend differentiably on its input (integer inputs such as token ids \
                 have no gradient); attribute to an embedding layer instead",
            )
        } else {
            error
        }
    })
}

/// Input gradients of the context's targets; when `prepare` left the output to the
/// method (explicit targets), the output comes from the same passes.
fn gradients_filling_output(context: &mut Context<'_>) -> Result<Vec<Tensor>> {
    if context.output.defined() {
        return gradients(context.model, &mut context.chunking, &context.inputs, &context.targets);
    }
    let (gradients, output) = gradients_with_output(context.model, &mut context.chunking, &context.inputs, &context.targets)?;
    context.output = output;
    Ok(gradients)
}

/// Captum's `Saliency`: |gradient| unless `abs=false`.
pub fn saliency(context: &mut Context<'_>) -> Result<MethodResult> {
    let absolute = context.options.bool("abs", true)?;
    apply_row_cap(context)?;
    let gradients = gradients_filling_output(context)?;
    let values = gradients.into_iter().map(|gradient| if absolute { gradient.abs() } else { gradient }).collect();
    Ok(MethodResult { values, convergence_deltas: Vec::new(), n_steps: None, figure_values: None })
}

/// Captum's `InputXGradient`: input × gradient.
pub fn input_x_gradient(context: &mut Context<'_>) -> Result<MethodResult> {
    apply_row_cap(context)?;
    let gradients = gradients_filling_output(context)?;
    let values = gradients.iter().zip(&context.inputs).map(|(gradient, input)| gradient * input).collect();
    Ok(MethodResult { values, convergence_deltas: Vec::new(), n_steps: None, figure_values: None })
}

/// Honours Captum's `internal_batch_size` as a cap on rows per pass.
pub fn apply_row_cap(context: &mut Context<'_>) -> Result<()> {
    if let Some(cap) = context.options.optional_int("internal_batch_size", 1, 1 << 20)? {
        context.chunking.max_rows = Some(cap as usize);
    }
    Ok(())
}
