//! How far each parameter and layer moved between two checkpoints of one model (what
//! fine-tuning changed): the norm of the change, relative to the first checkpoint's
//! weights, and the cosine between the two weight vectors.

use super::bind::{BoundCheckpoint, ParameterSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct WeightChange {
    /// A parameter, or a layer for the per-layer rows.
    pub name: String,
    pub from_norm: f64,
    pub change_norm: f64,
    pub relative_change: f64,
    pub cosine: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightChangeReport {
    pub parameters: Vec<WeightChange>,
    pub layers: Vec<WeightChange>,
}

/// Sums of squares and the dot product, from which every number is derived.
#[derive(Default, Clone, Copy)]
struct Sums {
    from: f64,
    to: f64,
    change: f64,
    dot: f64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        self.from += other.from;
        self.to += other.to;
        self.change += other.change;
        self.dot += other.dot;
    }

    fn finish(self, name: &str) -> WeightChange {
        let (from_norm, to_norm, change_norm) = (self.from.sqrt(), self.to.sqrt(), self.change.sqrt());
        WeightChange {
            name: name.to_string(),
            from_norm,
            change_norm,
            relative_change: if from_norm > 0.0 { change_norm / from_norm } else { f64::NAN },
            cosine: if from_norm > 0.0 && to_norm > 0.0 { self.dot / (from_norm * to_norm) } else { f64::NAN },
        }
    }
}

/// The change from `from` to `to` (both bound to the same model), per parameter and
/// per owning layer, in the model's order.
pub fn weight_change(from: &BoundCheckpoint, to: &BoundCheckpoint, parameters: &[ParameterSpec]) -> WeightChangeReport {
    let mut rows = Vec::new();
    let mut layers: Vec<(String, Sums)> = Vec::new();
    for (index, spec) in parameters.iter().enumerate() {
        let (before, after) = (from.weights[index].to_f32(), to.weights[index].to_f32());
        let mut sums = Sums::default();
        for (&a, &b) in before.iter().zip(&after) {
            let (a, b) = (f64::from(a), f64::from(b));
            sums.from += a * a;
            sums.to += b * b;
            sums.change += (b - a) * (b - a);
            sums.dot += a * b;
        }
        rows.push(sums.finish(&spec.name));
        match layers.iter_mut().find(|(layer, _)| *layer == spec.layer) {
            Some((_, layer)) => layer.add(sums),
            None => layers.push((spec.layer.clone(), sums)),
        }
    }
    let layers = layers.into_iter().map(|(layer, sums)| sums.finish(&layer)).collect();
    WeightChangeReport { parameters: rows, layers }
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_change_and_cosine_follow_their_definitions() {
        let sums = super::Sums { from: 4.0, to: 4.0, change: 8.0, dot: 0.0 };
        let change = sums.finish("layer");
        assert_eq!((change.from_norm, change.relative_change, change.cosine), (2.0, 8f64.sqrt() / 2.0, 0.0));
    }
}
