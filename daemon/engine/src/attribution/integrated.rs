//! Integrated gradients (Sundararajan et al. 2017) with Captum's quadrature rules,
//! baselines and convergence delta, plus an adaptive step count: `n_steps=auto`
//! doubles the steps until |delta| / |F(input) - F(baseline)| is below `tolerance`.

use super::gradients::{apply_row_cap, for_each_gradient_chunk, forward_selected};
use super::{shallow, torch_error, Context, MethodResult};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

pub const RULES: &[&str] = &["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"];
const MAX_STEPS: i64 = 100_000;
pub fn integrated_gradients(context: &mut Context<'_>) -> Result<MethodResult> {
    apply_row_cap(context)?;
    let baselines = baselines(context)?;
    let inputs = shallow(&context.inputs);
    let targets = context.targets.clone();
    // F(input) for the targets is known from the forward pass that resolved them.
    let at_inputs = context.selected_output()?;
    integrated_gradients_on(context, &inputs, &baselines, &targets, Some(at_inputs))
}

/// Integrated gradients of `inputs` against `baselines` (both one tensor per model
/// input, same shapes) for one target per row; used directly and inside the noise
/// tunnel.
pub fn integrated_gradients_on(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    targets: &[i64],
    known_at_inputs: Option<Tensor>,
) -> Result<MethodResult> {
    let rule = context.options.choice("method", "gausslegendre", RULES)?;
    let multiply_by_inputs = context.options.bool("multiply_by_inputs", true)?;
    let auto = context.options.text("n_steps").is_some_and(|text| text.trim() == "auto");
    let minimum = if rule == "gausslegendre" { 1 } else { 2 };
    let differences: Vec<Tensor> = inputs.iter().zip(baselines).map(|(input, baseline)| input - baseline).collect();
    // The two ends of the path, evaluated once: F(input) and F(baseline) per row.
    let at_inputs = match known_at_inputs {
        Some(known) => known,
        None => forward_selected(context.model, &mut context.chunking, inputs, targets)?,
    };
    let at_baselines = forward_selected(context.model, &mut context.chunking, baselines, targets)?;
    let ends = (&at_inputs, &at_baselines);
    let finish = |total: Vec<Tensor>| -> Result<(Vec<Tensor>, Vec<f64>)> {
        let values: Vec<Tensor> =
            if multiply_by_inputs { total.iter().zip(&differences).map(|(gradient, difference)| gradient * difference).collect() } else { total };
        let deltas = convergence_deltas(&values, inputs, ends)?;
        Ok((values, deltas))
    };
    if !auto {
        let n_steps = context.options.int("n_steps", 50, minimum, MAX_STEPS)?;
        let total = summed_gradients(context, inputs, baselines, &differences, targets, rule, n_steps)?;
        let (values, deltas) = finish(total)?;
        return Ok(MethodResult { values, convergence_deltas: deltas, n_steps: Some(n_steps as u32), figure_values: None });
    }

    // Adaptive: double the steps until the completeness error is small enough.
    let tolerance = context.options.f64("tolerance", 0.01)?;
    if tolerance <= 0.0 {
        return Err(context.options.invalid("tolerance", &tolerance.to_string(), "a positive number"));
    }
    let max_steps = context.options.int("max_steps", 512, minimum, MAX_STEPS)?;
    let gaps = to_f64(&(&at_inputs - &at_baselines))?;
    // Without an explicit rule, adapt with Clenshaw–Curtis: its nodes nest when the
    // step count doubles, so no gradient is computed twice, and it converges almost
    // as fast as Gauss–Legendre on smooth paths.
    if context.options.text("method").is_none() {
        return clenshaw_curtis_adaptive(context, inputs, baselines, &differences, targets, tolerance, max_steps, &gaps, multiply_by_inputs, ends);
    }
    if matches!(rule, "riemann_left" | "riemann_right" | "riemann_trapezoid") {
        return nested_adaptive(context, inputs, baselines, &differences, targets, rule, tolerance, max_steps, &gaps, multiply_by_inputs, ends);
    }
    let mut n_steps = 4.min(max_steps);
    loop {
        let total = summed_gradients(context, inputs, baselines, &differences, targets, rule, n_steps)?;
        let (values, deltas) = finish(total)?;
        let relative_error = deltas.iter().zip(&gaps).map(|(delta, gap)| delta.abs() / gap.abs().max(1e-12)).fold(0.0, f64::max);
        if relative_error <= tolerance || n_steps >= max_steps {
            return Ok(MethodResult { values, convergence_deltas: deltas, n_steps: Some(n_steps as u32), figure_values: None });
        }
        n_steps = (n_steps * 2).min(max_steps);
    }
}

/// Σ_steps weight_s · ∂F/∂x at baseline + alpha_s (input - baseline), per input.
fn summed_gradients(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    rule: &str,
    n_steps: i64,
) -> Result<Vec<Tensor>> {
    let (alphas, weights) = quadrature(rule, n_steps as usize);
    weighted_gradient_sum(context, inputs, baselines, differences, targets, &alphas, &weights)
}

/// Σ_s weights[s] · ∂F/∂x at baseline + alphas[s] (input - baseline), per input.
fn weighted_gradient_sum(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    alphas: &[f64],
    weights: &[f64],
) -> Result<Vec<Tensor>> {
    let mut totals: Vec<Tensor> = inputs.iter().map(Tensor::zeros_like).collect();
    path_gradients(context, baselines, differences, targets, alphas, |step, example, gradients| {
        for (total, gradient) in totals.iter_mut().zip(gradients) {
            let mut slot = total.narrow(0, example, gradient.size()[0]);
            let _ = slot.f_add_(&(gradient * weights[step])).map_err(torch_error("summing gradients"))?;
        }
        Ok(())
    })?;
    Ok(totals)
}

/// ∂F/∂x at each node separately: `[node][input]`, each shaped like the input.
fn node_gradients(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    alphas: &[f64],
) -> Result<Vec<Vec<Tensor>>> {
    let mut nodes: Vec<Vec<Tensor>> = alphas.iter().map(|_| inputs.iter().map(Tensor::zeros_like).collect()).collect();
    path_gradients(context, baselines, differences, targets, alphas, |step, example, gradients| {
        for (slot, gradient) in nodes[step].iter_mut().zip(gradients) {
            slot.narrow(0, example, gradient.size()[0]).f_copy_(gradient).map_err(torch_error("keeping node gradients"))?;
        }
        Ok(())
    })?;
    Ok(nodes)
}

/// Gradients of F at baseline + alpha (input - baseline) for every alpha and row, in
/// chunked passes; `sink(step, first example, gradients)` receives each contiguous
/// piece (one tensor per input, rows `first example..`).
fn path_gradients(
    context: &mut Context<'_>,
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    alphas: &[f64],
    mut sink: impl FnMut(usize, i64, &[Tensor]) -> Result<()>,
) -> Result<()> {
    let n_steps = alphas.len();
    let batch = baselines[0].size()[0] as usize;
    // Virtual rows are step-major: row r is example r % batch at step r / batch,
    // and its target is that example's (Captum's `_expand_target`).
    let expanded_targets: Vec<i64> = (0..n_steps).flat_map(|_| targets.iter().copied()).collect();
    let segments = |start: usize, end: usize| -> Vec<(usize, usize, usize)> {
        // (step, first example, example count) pieces of rows start..end
        let mut pieces = Vec::new();
        let mut row = start;
        while row < end {
            let (step, example) = (row / batch, row % batch);
            let count = (batch - example).min(end - row);
            pieces.push((step, example, count));
            row += count;
        }
        pieces
    };
    for_each_gradient_chunk(
        context.model,
        &mut context.chunking,
        &expanded_targets,
        |start, end| {
            let pieces = segments(start, end);
            baselines
                .iter()
                .zip(differences)
                .map(|(baseline, difference)| {
                    let parts: Vec<Tensor> = pieces
                        .iter()
                        .map(|&(step, example, count)| {
                            let (example, count) = (example as i64, count as i64);
                            baseline.narrow(0, example, count) + difference.narrow(0, example, count) * alphas[step]
                        })
                        .collect();
                    Tensor::f_cat(&parts, 0).map_err(torch_error("building the integration path"))
                })
                .collect()
        },
        |start, gradients| {
            let mut offset = 0i64;
            for (step, example, count) in segments(start, start + gradients[0].size()[0] as usize) {
                let count = count as i64;
                let pieces: Vec<Tensor> = gradients.iter().map(|gradient| gradient.narrow(0, offset, count)).collect();
                sink(step, example as i64, &pieces)?;
                offset += count;
            }
            Ok(())
        },
    )
}

/// Adaptive steps for the Riemann rules whose nodes nest when the step count grows
/// (left and right: n → 2n; Captum's trapezoid, nodes k/(n-1): n → 2n-1): each round
/// evaluates only the new nodes and reuses the running sum of all gradients so far.
/// The result equals the fixed-step rule at the final step count.
#[allow(clippy::too_many_arguments)]
fn nested_adaptive(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    rule: &str,
    tolerance: f64,
    max_steps: i64,
    gaps: &[f64],
    multiply_by_inputs: bool,
    path_ends: (&Tensor, &Tensor),
) -> Result<MethodResult> {
    let trapezoid = rule == "riemann_trapezoid";
    let mut n = if trapezoid { 9 } else { 8 };
    // Nodes of the first round, from Captum's rule itself.
    let (first_alphas, _) = quadrature(rule, n as usize);
    let ones = |count: usize| vec![1.0; count];
    let mut sums = weighted_gradient_sum(context, inputs, baselines, differences, targets, &first_alphas, &ones(first_alphas.len()))?;
    // The trapezoid halves the weights of its two end nodes, 0 and 1.
    let ends =
        if trapezoid { Some(weighted_gradient_sum(context, inputs, baselines, differences, targets, &[0.0, 1.0], &[1.0, 1.0])?) } else { None };
    loop {
        let totals: Vec<Tensor> = sums
            .iter()
            .enumerate()
            .map(|(index, sum)| match &ends {
                Some(ends) => sum / n as f64 - &ends[index] / (2.0 * n as f64),
                None => sum / n as f64,
            })
            .collect();
        let values: Vec<Tensor> =
            if multiply_by_inputs { totals.iter().zip(differences).map(|(total, difference)| total * difference).collect() } else { totals };
        let deltas = convergence_deltas(&values, inputs, path_ends)?;
        let relative_error = deltas.iter().zip(gaps).map(|(delta, gap)| delta.abs() / gap.abs().max(1e-12)).fold(0.0, f64::max);
        let next = if trapezoid { 2 * n - 1 } else { 2 * n };
        if relative_error <= tolerance || next > max_steps {
            return Ok(MethodResult { values, convergence_deltas: deltas, n_steps: Some(n as u32), figure_values: None });
        }
        // The new nodes: odd multiples of half the current spacing.
        let new_alphas: Vec<f64> = if trapezoid {
            (0..n - 1).map(|k| (2 * k + 1) as f64 / (2 * (n - 1)) as f64).collect()
        } else {
            (0..n).map(|k| (2 * k + 1) as f64 / (2 * n) as f64).collect()
        };
        let added = weighted_gradient_sum(context, inputs, baselines, differences, targets, &new_alphas, &ones(new_alphas.len()))?;
        for (sum, extra) in sums.iter_mut().zip(added) {
            *sum += extra;
        }
        n = next;
    }
}

/// Adaptive Clenshaw–Curtis on [0, 1]: nodes (1 - cos(jπ/N)) / 2 for j = 0..N, N =
/// 8, 16, 32, ...; each round evaluates only the new (odd) nodes and recombines all
/// kept node gradients with the new weights. Reports N + 1 steps.
#[allow(clippy::too_many_arguments)]
fn clenshaw_curtis_adaptive(
    context: &mut Context<'_>,
    inputs: &[Tensor],
    baselines: &[Tensor],
    differences: &[Tensor],
    targets: &[i64],
    tolerance: f64,
    max_steps: i64,
    gaps: &[f64],
    multiply_by_inputs: bool,
    path_ends: (&Tensor, &Tensor),
) -> Result<MethodResult> {
    let mut n = 8usize;
    let first: Vec<f64> = (0..=n).map(|j| clenshaw_curtis_node(j, n)).collect();
    // Node gradients by index on the finest grid seen so far (index j of N).
    let mut kept: Vec<Vec<Tensor>> = node_gradients(context, inputs, baselines, differences, targets, &first)?;
    loop {
        let weights = clenshaw_curtis_weights(n);
        let totals: Vec<Tensor> = (0..inputs.len())
            .map(|input| kept.iter().zip(&weights).fold(inputs[input].zeros_like(), |total, (node, &weight)| total + &node[input] * weight))
            .collect();
        let values: Vec<Tensor> =
            if multiply_by_inputs { totals.iter().zip(differences).map(|(total, difference)| total * difference).collect() } else { totals };
        let deltas = convergence_deltas(&values, inputs, path_ends)?;
        let relative_error = deltas.iter().zip(gaps).map(|(delta, gap)| delta.abs() / gap.abs().max(1e-12)).fold(0.0, f64::max);
        if relative_error <= tolerance || (2 * n + 1) as i64 > max_steps {
            return Ok(MethodResult { values, convergence_deltas: deltas, n_steps: Some(n as u32 + 1), figure_values: None });
        }
        // Doubling: the old node j becomes node 2j; the new nodes are the odd ones.
        let new_alphas: Vec<f64> = (0..n).map(|k| clenshaw_curtis_node(2 * k + 1, 2 * n)).collect();
        let mut added = node_gradients(context, inputs, baselines, differences, targets, &new_alphas)?.into_iter();
        let mut merged = Vec::with_capacity(2 * n + 1);
        for (index, node) in kept.into_iter().enumerate() {
            merged.push(node);
            if index < n {
                merged.push(added.next().expect("one new node between each pair"));
            }
        }
        kept = merged;
        n *= 2;
    }
}

/// Node j of the N-interval Clenshaw–Curtis rule, mapped to [0, 1].
fn clenshaw_curtis_node(j: usize, n: usize) -> f64 {
    (1.0 - (std::f64::consts::PI * j as f64 / n as f64).cos()) / 2.0
}

/// Clenshaw–Curtis weights for nodes j = 0..N (N even) on [0, 1]; they sum to 1.
fn clenshaw_curtis_weights(n: usize) -> Vec<f64> {
    (0..=n)
        .map(|j| {
            let end = j == 0 || j == n;
            let mut sum = 0.0;
            for k in 1..=n / 2 {
                let b = if 2 * k == n { 1.0 } else { 2.0 };
                sum += b / (4.0 * (k * k) as f64 - 1.0) * (2.0 * std::f64::consts::PI * (k * j) as f64 / n as f64).cos();
            }
            let c = if end { 1.0 } else { 2.0 };
            // The rule on [-1, 1] has weights summing to 2; halve them for [0, 1].
            c / n as f64 * (1.0 - sum) / 2.0
        })
        .collect()
}

/// Captum's `compute_convergence_delta`: per row, the sum of all attributions minus
/// (F(input) - F(baseline)).
fn convergence_deltas(values: &[Tensor], inputs: &[Tensor], (at_inputs, at_baselines): (&Tensor, &Tensor)) -> Result<Vec<f64>> {
    let batch = inputs[0].size()[0];
    let mut row_sums = Tensor::zeros([batch], (Kind::Double, inputs[0].device()));
    for value in values {
        row_sums += value.to_kind(Kind::Double).view([batch, -1]).sum_dim_intlist(1, false, Kind::Double);
    }
    let deltas = row_sums - (at_inputs.to_kind(Kind::Double) - at_baselines.to_kind(Kind::Double));
    to_f64(&deltas)
}

fn to_f64(tensor: &Tensor) -> Result<Vec<f64>> {
    Vec::<f64>::try_from(&tensor.to_kind(Kind::Double).to_device(tch::Device::Cpu).view([-1])).map_err(torch_error("reading values"))
}

/// Captum's nodes (alphas in [0, 1]) and weights (step sizes) for `n` steps.
pub fn quadrature(rule: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    if rule == "gausslegendre" {
        let (nodes, weights) = gauss_legendre(n);
        return (nodes.iter().map(|x| 0.5 * (x + 1.0)).collect(), weights.iter().map(|w| 0.5 * w).collect());
    }
    // Riemann rules: Captum takes alphas from torch.linspace in float32 and equal
    // steps 1/n, halved at both ends for the trapezoid.
    let (start, end) = match rule {
        "riemann_left" => (0.0, 1.0 - 1.0 / n as f64),
        "riemann_right" => (1.0 / n as f64, 1.0),
        "riemann_middle" => (1.0 / (2.0 * n as f64), 1.0 - 1.0 / (2.0 * n as f64)),
        _ => (0.0, 1.0),
    };
    let alphas = Vec::<f32>::try_from(&Tensor::linspace(start, end, n as i64, (Kind::Float, tch::Device::Cpu)))
        .expect("linspace values")
        .into_iter()
        .map(f64::from)
        .collect();
    let mut weights = vec![1.0 / n as f64; n];
    if rule == "riemann_trapezoid" {
        weights[0] /= 2.0;
        weights[n - 1] /= 2.0;
    }
    (alphas, weights)
}

/// Gauss–Legendre nodes (ascending, on [-1, 1]) and weights, by Newton's method on
/// the Legendre polynomial P_n from the Chebyshev-like initial guesses.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n.div_ceil(2) {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut previous, mut current) = (1.0, x);
            if n == 1 {
                current = x;
                previous = 1.0;
            } else {
                for k in 2..=n {
                    let next = ((2 * k - 1) as f64 * x * current - (k - 1) as f64 * previous) / k as f64;
                    previous = current;
                    current = next;
                }
            }
            let p_n = if n == 1 { x } else { current };
            let p_n_minus_1 = if n == 1 { 1.0 } else { previous };
            derivative = n as f64 * (x * p_n - p_n_minus_1) / (x * x - 1.0);
            let step = p_n / derivative;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - x * x) * derivative * derivative);
        nodes[i] = -x;
        nodes[n - 1 - i] = x;
        weights[i] = weight;
        weights[n - 1 - i] = weight;
    }
    (nodes, weights)
}

/// One baseline per input, shaped as the input: a tensor option (`baselines`,
/// `baselines.1`; full shape, shape without batch, or one value), or the text option
/// `baselines` = `zeros` (default), a number, `blur` (Gaussian blur of the input,
/// `blur_sigma` pixels, default 3) or `uniform` (noise between `baseline_low` and
/// `baseline_high`, default the input's range; seeded by `seed`).
pub fn baselines(context: &Context<'_>) -> Result<Vec<Tensor>> {
    let kind = context.options.text("baselines").unwrap_or("zeros");
    if let Some(seed) = context.options.optional_int("seed", 0, i64::MAX)? {
        tch::manual_seed(seed);
    }
    let mut baselines = Vec::new();
    for (index, input) in context.inputs.iter().enumerate() {
        if let Some(tensor) = context.tensor_param("baselines", index)? {
            baselines.push(broadcast_to_input(&tensor, input, &format!("baselines{}", suffix(index)))?);
            continue;
        }
        let baseline = match kind {
            "zeros" | "zero" => input.zeros_like(),
            "blur" => blur(input, context.options.f64("blur_sigma", 3.0)?)?,
            "uniform" => {
                let low = context.options.f64("baseline_low", f64::from(input.min().double_value(&[]) as f32))?;
                let high = context.options.f64("baseline_high", f64::from(input.max().double_value(&[]) as f32))?;
                input.rand_like() * (high - low) + low
            }
            number => match number.parse::<f64>() {
                Ok(value) if value.is_finite() => input.zeros_like() + value,
                _ => return Err(context.options.invalid("baselines", number, "zeros, blur, uniform, a number, or a baselines tensor")),
            },
        };
        baselines.push(baseline);
    }
    Ok(baselines)
}

fn suffix(index: usize) -> String {
    if index == 0 {
        String::new()
    } else {
        format!(".{index}")
    }
}

/// A tensor option that must match an input: the input's shape, its shape without
/// the batch dimension, or a single value.
pub fn broadcast_to_input(tensor: &Tensor, input: &Tensor, name: &str) -> Result<Tensor> {
    let (shape, input_shape) = (tensor.size(), input.size());
    if shape == input_shape {
        return Ok(tensor.shallow_clone());
    }
    if shape == input_shape[1..] || tensor.numel() == 1 || (shape.first() == Some(&1) && shape[1..] == input_shape[1..]) {
        return tensor.f_expand_as(input).and_then(|t| t.f_contiguous()).map_err(torch_error("broadcasting a baseline"));
    }
    Err(Error::bad_input(format!(
        "{name} has shape {shape:?} but the input has shape {input_shape:?}; give the input's shape, its shape without the batch dimension, or one value"
    )))
}

/// Gaussian blur over the last two dimensions of `(batch, channels, height, width)`,
/// reflecting at the borders.
fn blur(input: &Tensor, sigma: f64) -> Result<Tensor> {
    let shape = input.size();
    if shape.len() != 4 {
        return Err(Error::bad_input(format!("blurred baselines need image inputs (batch, channels, height, width); the input has shape {shape:?}")));
    }
    if sigma <= 0.0 {
        return Err(Error::bad_input(format!("blur_sigma must be positive, got {sigma}")));
    }
    let radius = ((3.0 * sigma).ceil() as i64).min(shape[2].min(shape[3]) - 1).max(1);
    let offsets = Tensor::arange_start(-radius, radius + 1, (Kind::Float, input.device()));
    let kernel = (-(&offsets * &offsets) / (2.0 * sigma * sigma)).exp();
    let kernel = &kernel / kernel.sum(Kind::Float);
    let channels = shape[1];
    let horizontal = kernel.view([1, 1, 1, -1]).repeat([channels, 1, 1, 1]);
    let vertical = kernel.view([1, 1, -1, 1]).repeat([channels, 1, 1, 1]);
    input
        .f_reflection_pad2d([radius, radius, 0, 0])
        .and_then(|padded| padded.f_conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], channels))
        .and_then(|rows| rows.f_reflection_pad2d([0, 0, radius, radius]))
        .and_then(|padded| padded.f_conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], channels))
        .map_err(torch_error("blurring the input"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        // n points integrate degree 2n-1 exactly: ∫_0^1 x^k dx = 1/(k+1).
        for n in [1, 2, 5, 50] {
            let (alphas, weights) = quadrature("gausslegendre", n);
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12, "n={n}");
            let k = (2 * n - 1) as i32;
            let integral: f64 = alphas.iter().zip(&weights).map(|(a, w)| w * a.powi(k)).sum();
            assert!((integral - 1.0 / (k as f64 + 1.0)).abs() < 1e-10, "n={n}: {integral}");
            assert!(alphas.windows(2).all(|pair| pair[0] < pair[1]), "ascending");
        }
    }

    #[test]
    fn clenshaw_curtis_integrates_polynomials_exactly() {
        // N + 1 nodes integrate polynomials of degree N exactly: ∫_0^1 x^k dx = 1/(k+1).
        for n in [2usize, 8, 16, 64] {
            let weights = clenshaw_curtis_weights(n);
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12, "n={n}");
            for k in [0, 1, n / 2, n] {
                let integral: f64 = (0..=n).map(|j| weights[j] * clenshaw_curtis_node(j, n).powi(k as i32)).sum();
                assert!((integral - 1.0 / (k as f64 + 1.0)).abs() < 1e-12, "n={n} k={k}: {integral}");
            }
        }
        // Nested: node j of N is node 2j of 2N.
        assert!((clenshaw_curtis_node(3, 8) - clenshaw_curtis_node(6, 16)).abs() < 1e-15);
    }

    #[test]
    fn riemann_rules_follow_captum() {
        let (alphas, weights) = quadrature("riemann_trapezoid", 5);
        assert_eq!(alphas, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(weights, vec![0.1, 0.2, 0.2, 0.2, 0.1]);
        let (alphas, _) = quadrature("riemann_left", 4);
        assert_eq!(alphas, vec![0.0, 0.25, 0.5, 0.75]);
        let (alphas, _) = quadrature("riemann_middle", 2);
        assert_eq!(alphas, vec![0.25, 0.75]);
    }
}
