//! The interpretable linear models Captum trains for LIME and Kernel SHAP, fitted as
//! Captum fits them (through scikit-learn), so the coefficients are the same numbers:
//!
//! - [`lasso`]: `sklearn.linear_model.Lasso(alpha)` with sample weights, Captum's
//!   `SkLearnLasso(alpha=0.01)` for LIME: weights rescaled to sum to the sample count,
//!   X and y centred on their weighted means (the intercept) and scaled by √weight, then
//!   scikit-learn's cyclic coordinate descent on ½‖y − Xw‖² + α·n‖w‖₁ with its gap-safe
//!   screening and its stopping rule (largest step ≤ tol·largest weight, then duality
//!   gap ≤ tol·‖y‖², tol = 1e-4, at most 1000 sweeps).
//! - [`weighted_least_squares`]: `sklearn.linear_model.LinearRegression` with sample
//!   weights, Captum's `SkLearnLinearRegression` for Kernel SHAP: the same centring and
//!   scaling, then LAPACK's minimum-norm least squares (`gelsd`, singular values below
//!   1e-6 of the largest dropped, as scipy's `lstsq(cond=1e-6)`).
//!
//! Both return the coefficients only: Captum's attribution is the linear model's weight.
//! The arithmetic is in f64 where scikit-learn works in the float32 Captum hands it, so
//! the numbers agree to float32 rounding and the solver's tolerance, not bit for bit.

use crate::error::{Error, ErrorKind, Result};
use tch::{Kind, Tensor};

/// Rows of X and y centred on their weighted means and scaled by √weight, the weights
/// first rescaled to sum to the number of rows (scikit-learn's `_preprocess_data` with
/// `rescale_with_sw`). X is row-major, `rows × columns`.
fn centred_and_scaled(x: &[f64], y: &[f64], weights: &[f64], columns: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows = y.len();
    if rows == 0 || x.len() != rows * columns || weights.len() != rows {
        return Err(Error::internal(format!(
            "a linear fit got {} values of X, {rows} of y and {} weights for {columns} columns",
            x.len(),
            weights.len()
        )));
    }
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(Error::bad_input("the samples' similarity weights sum to zero or are not finite"));
    }
    let weights: Vec<f64> = weights.iter().map(|weight| weight * rows as f64 / total).collect();
    let weight_sum: f64 = weights.iter().sum();
    let mut x_offset = vec![0.0f64; columns];
    let mut y_offset = 0.0f64;
    for (row, &weight) in weights.iter().enumerate() {
        for (column, offset) in x_offset.iter_mut().enumerate() {
            *offset += weight * x[row * columns + column];
        }
        y_offset += weight * y[row];
    }
    x_offset.iter_mut().for_each(|offset| *offset /= weight_sum);
    y_offset /= weight_sum;
    let mut centred_x = vec![0.0f64; x.len()];
    let mut centred_y = vec![0.0f64; rows];
    for (row, &weight) in weights.iter().enumerate() {
        let root = weight.sqrt();
        for column in 0..columns {
            centred_x[row * columns + column] = (x[row * columns + column] - x_offset[column]) * root;
        }
        centred_y[row] = (y[row] - y_offset) * root;
    }
    Ok((centred_x, centred_y))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// scikit-learn's Lasso coordinate descent (`enet_coordinate_descent` with β = 0) on
/// centred, scaled data: ½‖y − Xw‖² + α‖w‖₁.
struct CoordinateDescent {
    columns: Vec<Vec<f64>>,
    norms: Vec<f64>,
    y: Vec<f64>,
    alpha: f64,
    w: Vec<f64>,
    /// y − Xw.
    residual: Vec<f64>,
    /// Features screened out (provably zero at the optimum).
    excluded: Vec<bool>,
}

/// The duality gap at the current w, with Xᵀ R and its largest magnitude.
struct Gap {
    gap: f64,
    xt_r: Vec<f64>,
    dual_norm: f64,
}

impl CoordinateDescent {
    /// scikit-learn's duality gap (formulation A).
    fn gap(&self) -> Gap {
        let xt_r: Vec<f64> = self.columns.iter().map(|column| dot(column, &self.residual)).collect();
        let dual_norm = xt_r.iter().fold(0.0f64, |max, value| max.max(value.abs()));
        let residual_norm2 = dot(&self.residual, &self.residual);
        let residual_y = dot(&self.residual, &self.y);
        let w_l1: f64 = self.w.iter().map(|value| value.abs()).sum();
        let primal = 0.5 * residual_norm2 + self.alpha * w_l1;
        let scale = if dual_norm > self.alpha { self.alpha / dual_norm } else { 1.0 };
        let dual = -0.5 * scale * scale * residual_norm2 + scale * residual_y;
        Gap { gap: primal - dual, xt_r, dual_norm }
    }

    /// Gap-safe screening (Fercoq et al. 2015, as scikit-learn): the features provably
    /// zero at the optimum leave the active set, their weight set to zero.
    fn screen(&mut self, at: &Gap) -> Vec<usize> {
        let mut active = Vec::with_capacity(self.w.len());
        for j in 0..self.w.len() {
            if self.excluded[j] {
                continue;
            }
            let theta = at.xt_r[j] / self.alpha.max(at.dual_norm);
            let distance = (1.0 - theta.abs()) / self.norms[j].sqrt();
            if distance <= (2.0 * at.gap).sqrt() / self.alpha {
                active.push(j);
            } else {
                self.set(j, 0.0);
                self.excluded[j] = true;
            }
        }
        active
    }

    /// Sets w[j], keeping the residual y − Xw.
    fn set(&mut self, j: usize, value: f64) {
        let change = self.w[j] - value;
        if change != 0.0 {
            for (r, x) in self.residual.iter_mut().zip(&self.columns[j]) {
                *r += change * x;
            }
        }
        self.w[j] = value;
    }
}

/// `Lasso(alpha).fit(x, y, sample_weight=weights).coef_` (see the module docs). X is
/// row-major, `y.len() × columns`.
pub fn lasso(x: &[f64], y: &[f64], weights: &[f64], columns: usize, alpha: f64) -> Result<Vec<f64>> {
    const TOL: f64 = 1e-4;
    const MAX_ITER: usize = 1000;
    let (x, y) = centred_and_scaled(x, y, weights, columns)?;
    let rows = y.len();
    let x_columns: Vec<Vec<f64>> = (0..columns).map(|column| (0..rows).map(|row| x[row * columns + column]).collect()).collect();
    let norms: Vec<f64> = x_columns.iter().map(|column| dot(column, column)).collect();
    let tol = TOL * dot(&y, &y);
    let mut descent = CoordinateDescent {
        excluded: norms.iter().map(|&norm| norm == 0.0).collect(),
        columns: x_columns,
        norms,
        residual: y.clone(),
        y,
        alpha: alpha * rows as f64,
        w: vec![0.0f64; columns],
    };
    let initial = descent.gap();
    if initial.gap <= tol {
        return Ok(descent.w);
    }
    let mut active = descent.screen(&initial);
    for iteration in 0..MAX_ITER {
        let mut w_max = 0.0f64;
        let mut step_max = 0.0f64;
        for &j in &active {
            let previous = descent.w[j];
            let tmp = dot(&descent.columns[j], &descent.residual) + previous * descent.norms[j];
            let value = if tmp == 0.0 { 0.0 } else { tmp.signum() * (tmp.abs() - descent.alpha).max(0.0) / descent.norms[j] };
            descent.set(j, value);
            step_max = step_max.max((value - previous).abs());
            w_max = w_max.max(value.abs());
        }
        if w_max == 0.0 || step_max / w_max <= TOL || iteration == MAX_ITER - 1 {
            let at = descent.gap();
            if at.gap <= tol {
                break;
            }
            active = descent.screen(&at);
        }
    }
    Ok(descent.w)
}

/// `LinearRegression().fit(x, y, sample_weight=weights).coef_` (see the module docs).
pub fn weighted_least_squares(x: &[f64], y: &[f64], weights: &[f64], columns: usize) -> Result<Vec<f64>> {
    let (x, y) = centred_and_scaled(x, y, weights, columns)?;
    let rows = y.len() as i64;
    let a = Tensor::from_slice(&x).reshape([rows, columns as i64]);
    let b = Tensor::from_slice(&y).reshape([rows, 1]);
    let (solution, _, _, _) =
        a.f_linalg_lstsq(&b, 1e-6, "gelsd").map_err(|error| Error::from_torch(error, ErrorKind::Internal, "fitting Kernel SHAP's linear model"))?;
    Vec::<f64>::try_from(solution.to_kind(Kind::Double).flatten(0, -1))
        .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "reading Kernel SHAP's coefficients"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X: 6 samples of 2 features, y = 3·x0 − 2·x1 + 1 exactly.
    fn exact_data() -> (Vec<f64>, Vec<f64>) {
        let x = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 3.0];
        let y = x.chunks(2).map(|row| 3.0 * row[0] - 2.0 * row[1] + 1.0).collect();
        (x, y)
    }

    #[test]
    fn least_squares_recovers_an_exact_linear_relation_whatever_the_weights() {
        let (x, y) = exact_data();
        let coefficients = weighted_least_squares(&x, &y, &[1.0, 5.0, 1.0, 2.0, 1.0, 1e6], 2).unwrap();
        assert!((coefficients[0] - 3.0).abs() < 1e-9 && (coefficients[1] + 2.0).abs() < 1e-9, "{coefficients:?}");
    }

    #[test]
    fn least_squares_gives_the_minimum_norm_solution_when_columns_repeat() {
        // Two identical columns: y = 2·x splits as 1 and 1.
        let x = vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
        let y = vec![0.0, 2.0, 4.0, 6.0];
        let coefficients = weighted_least_squares(&x, &y, &[1.0; 4], 2).unwrap();
        assert!((coefficients[0] - 1.0).abs() < 1e-9 && (coefficients[1] - 1.0).abs() < 1e-9, "{coefficients:?}");
    }

    #[test]
    fn lasso_without_penalty_is_least_squares_and_a_large_penalty_zeroes_everything() {
        let (x, y) = exact_data();
        let weights = [1.0, 2.0, 1.0, 1.0, 3.0, 1.0];
        let free = lasso(&x, &y, &weights, 2, 1e-12).unwrap();
        assert!((free[0] - 3.0).abs() < 1e-3 && (free[1] + 2.0).abs() < 1e-3, "{free:?}");
        assert_eq!(lasso(&x, &y, &weights, 2, 1e3).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn lasso_shrinks_a_single_feature_by_the_soft_threshold() {
        // One centred feature: w = sign(xᵀy)·max(|xᵀy| − α·n, 0) / xᵀx.
        let x = vec![0.0, 1.0, 0.0, 1.0];
        let y = vec![0.0, 2.0, 0.0, 2.0];
        let coefficients = lasso(&x, &y, &[1.0; 4], 1, 0.1).unwrap();
        // Centred: x = ±0.5, y = ±1; xᵀy = 2, xᵀx = 1, α·n = 0.4.
        assert!((coefficients[0] - 1.6).abs() < 1e-12, "{coefficients:?}");
    }
}
