//! Objectives for activation maximisation: what an image is optimised to increase.
//! One objective is a weighted sum of terms; each term reads the model output or one
//! layer's output (a tap) and gives one value per image.

use crate::error::{Error, Result};
use crate::taps::TappedModel;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    /// The logit of a class.
    Class(i64),
    /// The logit of a class minus the mean of the other logits.
    ClassVsRest(i64),
    /// The mean of one channel of a layer's output (one feature of a 2-d output).
    Channel { layer: String, channel: i64 },
    /// `channel:LAYER:*`: one objective per channel, expanded before the job starts.
    EveryChannel { layer: String },
    /// One value of a channel: at (y, x), or the centre.
    Neuron { layer: String, channel: i64, position: Option<(i64, i64)> },
    /// The mean square of a layer's output (DeepDream).
    Layer { layer: String },
    /// Cosine similarity of the layer's channel vectors with a direction, averaged over
    /// positions (Lucent's `direction`).
    Direction { layer: String, direction: Vec<f32> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub kind: TermKind,
    pub weight: f64,
    /// The term as written, for labels.
    pub text: String,
}

/// A weighted sum of terms, maximised.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub terms: Vec<Term>,
}

const GRAMMAR: &str = "class:N, class_vs_rest:N, channel:LAYER:C (C = * for every channel), neuron:LAYER:C[:Y:X], layer:LAYER or direction:LAYER";

impl Term {
    /// Parses one term (see the module doc and `GRAMMAR`); `direction` is the vector
    /// a `direction:` term needs.
    pub fn parse(text: &str, weight: f64, direction: &[f32]) -> Result<Term> {
        let text = text.trim();
        let bad = |why: &str| Error::bad_input(format!("objective '{text}': {why}; terms are {GRAMMAR}"));
        let (name, rest) = text.split_once(':').ok_or_else(|| bad("no ':' after the term's kind"))?;
        let integer = |value: &str, what: &str| value.trim().parse::<i64>().map_err(|_| bad(&format!("{what} '{value}' is not an integer")));
        // The layer path is everything up to the trailing integer fields.
        let split_layer = |fields: usize| -> Result<(String, Vec<i64>)> {
            let parts: Vec<&str> = rest.rsplitn(fields + 1, ':').collect();
            if parts.len() != fields + 1 || parts[fields].is_empty() {
                return Err(bad("expected a layer path and channel"));
            }
            let numbers = parts[..fields].iter().rev().map(|value| integer(value, "index")).collect::<Result<Vec<_>>>()?;
            Ok((parts[fields].to_string(), numbers))
        };
        let kind = match name {
            "class" => TermKind::Class(integer(rest, "class")?),
            "class_vs_rest" => TermKind::ClassVsRest(integer(rest, "class")?),
            "channel" => match rest.strip_suffix(":*") {
                Some(layer) if !layer.is_empty() => TermKind::EveryChannel { layer: layer.to_string() },
                _ => {
                    let (layer, numbers) = split_layer(1)?;
                    TermKind::Channel { layer, channel: numbers[0] }
                }
            },
            "neuron" => {
                // neuron:LAYER:C:Y:X when the last three fields are integers, else neuron:LAYER:C.
                let parts: Vec<&str> = rest.rsplitn(4, ':').collect();
                let with_position = parts.len() == 4 && parts[..3].iter().all(|part| part.trim().parse::<i64>().is_ok());
                if with_position {
                    let (layer, numbers) = split_layer(3)?;
                    TermKind::Neuron { layer, channel: numbers[0], position: Some((numbers[1], numbers[2])) }
                } else {
                    let (layer, numbers) = split_layer(1)?;
                    TermKind::Neuron { layer, channel: numbers[0], position: None }
                }
            }
            "layer" if !rest.is_empty() => TermKind::Layer { layer: rest.to_string() },
            "direction" if !rest.is_empty() => {
                if direction.is_empty() {
                    return Err(bad("a direction term needs a direction vector (one value per channel)"));
                }
                TermKind::Direction { layer: rest.to_string(), direction: direction.to_vec() }
            }
            _ => return Err(bad(&format!("unknown kind '{name}'"))),
        };
        if let TermKind::Class(class) | TermKind::ClassVsRest(class) = kind {
            if class < 0 {
                return Err(bad("a class index cannot be negative"));
            }
        }
        let weight = if weight == 0.0 { 1.0 } else { weight };
        if !weight.is_finite() {
            return Err(bad("the weight is not finite"));
        }
        Ok(Term { kind, weight, text: text.to_string() })
    }

    pub fn layer(&self) -> Option<&str> {
        match &self.kind {
            TermKind::Class(_) | TermKind::ClassVsRest(_) => None,
            TermKind::Channel { layer, .. }
            | TermKind::EveryChannel { layer }
            | TermKind::Neuron { layer, .. }
            | TermKind::Layer { layer }
            | TermKind::Direction { layer, .. } => Some(layer),
        }
    }
}

impl Objective {
    /// The layer of a `channel:LAYER:*` objective, which must be its only term.
    pub fn every_channel(&self) -> Result<Option<&str>> {
        let wildcard = self.terms.iter().find_map(|term| match &term.kind {
            TermKind::EveryChannel { layer } => Some(layer.as_str()),
            _ => None,
        });
        if wildcard.is_some() && self.terms.len() > 1 {
            return Err(Error::bad_input(format!("'{}': a channel:LAYER:* term stands alone, not in a weighted sum", self.label())));
        }
        Ok(wildcard)
    }

    /// `channel:LAYER:C` for every channel C of a layer with `channels` channels.
    pub fn channels_of(layer: &str, channels: i64) -> Vec<Objective> {
        (0..channels)
            .map(|channel| Objective {
                terms: vec![Term {
                    kind: TermKind::Channel { layer: layer.to_string(), channel },
                    weight: 1.0,
                    text: format!("channel:{layer}:{channel}"),
                }],
            })
            .collect()
    }

    /// "class 3", "0.5·channel:features.0:2 + class:3".
    pub fn label(&self) -> String {
        self.terms
            .iter()
            .map(|term| if term.weight == 1.0 { term.text.clone() } else { format!("{}·{}", term.weight, term.text) })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    pub fn layers(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().filter_map(Term::layer)
    }
}

/// Where the layers the objectives read come from: the tap index of each layer path.
pub struct LayerIndex {
    paths: Vec<(String, usize)>,
}

impl LayerIndex {
    /// Resolves every layer the objectives name (unknown paths list close matches).
    pub fn resolve<'a>(tapped: &TappedModel, layers: impl Iterator<Item = &'a str>) -> Result<LayerIndex> {
        let mut paths: Vec<(String, usize)> = Vec::new();
        for layer in layers {
            if !paths.iter().any(|(path, _)| path == layer) {
                paths.push((layer.to_string(), tapped.tap_index(layer)?));
            }
        }
        Ok(LayerIndex { paths })
    }

    /// The taps the objectives read.
    pub fn tap_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.paths.iter().map(|(_, index)| *index)
    }

    pub fn empty() -> LayerIndex {
        LayerIndex { paths: Vec::new() }
    }

    /// The output of `layer` among the taps of one forward pass.
    pub fn tap_of<'t>(&self, taps: &'t [Option<Tensor>], layer: &str) -> Result<&'t Tensor> {
        self.tap(taps, layer)
    }

    fn tap<'t>(&self, taps: &'t [Option<Tensor>], layer: &str) -> Result<&'t Tensor> {
        let index = self
            .paths
            .iter()
            .find(|(path, _)| path == layer)
            .map(|(_, index)| *index)
            .ok_or_else(|| Error::internal(format!("layer {layer} was not resolved")))?;
        taps.get(index).and_then(Option::as_ref).ok_or_else(|| Error::bad_input(format!("layer {layer} produced no tensor on this input")))
    }
}

/// Checks every term against the shapes of one forward pass: class and channel
/// indices in range, positions inside the layer, direction lengths.
pub fn check(objectives: &[Objective], output: &Tensor, taps: &[Option<Tensor>], layers: &LayerIndex) -> Result<()> {
    for term in objectives.iter().flat_map(|objective| &objective.terms) {
        match &term.kind {
            TermKind::Class(class) | TermKind::ClassVsRest(class) => {
                if output.dim() != 2 {
                    return Err(Error::bad_input(format!(
                        "objective '{}': the model output has shape {:?}, not (batch, classes)",
                        term.text,
                        output.size()
                    )));
                }
                let classes = output.size()[1];
                if *class >= classes {
                    return Err(Error::bad_input(format!(
                        "objective '{}': class {class} is out of range; the model has classes 0..{}",
                        term.text,
                        classes - 1
                    )));
                }
            }
            TermKind::Channel { layer, channel } | TermKind::Neuron { layer, channel, .. } => {
                let tap = layers.tap(taps, layer)?;
                if tap.dim() < 2 {
                    return Err(Error::bad_input(format!(
                        "objective '{}': layer {layer} has output shape {:?}, which has no channels",
                        term.text,
                        tap.size()
                    )));
                }
                let channels = tap.size()[1];
                if *channel < 0 || *channel >= channels {
                    return Err(Error::bad_input(format!(
                        "objective '{}': channel {channel} is out of range; layer {layer} has channels 0..{} (output shape {:?})",
                        term.text,
                        channels - 1,
                        tap.size()
                    )));
                }
                if let TermKind::Neuron { position: Some((y, x)), .. } = &term.kind {
                    let size = tap.size();
                    if size.len() != 4 || *y < 0 || *x < 0 || *y >= size[2] || *x >= size[3] {
                        return Err(Error::bad_input(format!(
                            "objective '{}': position ({y}, {x}) is outside layer {layer}'s output of shape {size:?}",
                            term.text
                        )));
                    }
                }
            }
            TermKind::Direction { layer, direction } => {
                let tap = layers.tap(taps, layer)?;
                let channels = if tap.dim() >= 2 { tap.size()[1] } else { 0 };
                if direction.len() as i64 != channels {
                    return Err(Error::bad_input(format!(
                        "objective '{}': the direction has {} values but layer {layer} has {channels} channels",
                        term.text,
                        direction.len()
                    )));
                }
            }
            TermKind::Layer { layer } => {
                layers.tap(taps, layer)?;
            }
            TermKind::EveryChannel { layer } => {
                return Err(Error::internal(format!("channel:{layer}:* was not expanded")));
            }
        }
    }
    Ok(())
}

/// One value per image: objective `j` applies to rows `j*per_objective ..
/// (j+1)*per_objective` of the batch.
pub fn evaluate(objectives: &[Objective], per_objective: i64, output: &Tensor, taps: &[Option<Tensor>], layers: &LayerIndex) -> Result<Tensor> {
    let mut values = Vec::with_capacity(objectives.len());
    for (index, objective) in objectives.iter().enumerate() {
        let start = index as i64 * per_objective;
        let mut total: Option<Tensor> = None;
        for term in &objective.terms {
            let rows = |tensor: &Tensor| tensor.narrow(0, start, per_objective);
            let value = match &term.kind {
                TermKind::Class(class) => rows(output).select(1, *class),
                TermKind::ClassVsRest(class) => {
                    let logits = rows(output);
                    let classes = logits.size()[1];
                    let chosen = logits.select(1, *class);
                    let others = (logits.sum_dim_intlist(1, false, Kind::Float) - &chosen) / ((classes - 1).max(1) as f64);
                    chosen - others
                }
                TermKind::Channel { layer, channel } => {
                    let channel_values = rows(layers.tap(taps, layer)?).select(1, *channel);
                    if channel_values.dim() > 1 {
                        channel_values.flatten(1, -1).mean_dim(1, false, Kind::Float)
                    } else {
                        channel_values
                    }
                }
                TermKind::Neuron { layer, channel, position } => {
                    let channel_values = rows(layers.tap(taps, layer)?).select(1, *channel);
                    if channel_values.dim() == 3 {
                        let (height, width) = (channel_values.size()[1], channel_values.size()[2]);
                        let (y, x) = position.unwrap_or((height / 2, width / 2));
                        channel_values.select(1, y).select(1, x)
                    } else {
                        channel_values.flatten(1, -1).select(1, 0)
                    }
                }
                TermKind::Layer { layer } => rows(layers.tap(taps, layer)?).square().flatten(1, -1).mean_dim(1, false, Kind::Float),
                TermKind::EveryChannel { layer } => return Err(Error::internal(format!("channel:{layer}:* was not expanded"))),
                TermKind::Direction { layer, direction } => {
                    let tap = rows(layers.tap(taps, layer)?);
                    let mut shape = vec![1i64; tap.dim()];
                    shape[1] = direction.len() as i64;
                    let direction = Tensor::from_slice(direction).to_device(tap.device()).reshape(&shape[..]);
                    let similarity = Tensor::cosine_similarity(&tap, &direction, 1, 1e-8);
                    if similarity.dim() > 1 {
                        similarity.flatten(1, -1).mean_dim(1, false, Kind::Float)
                    } else {
                        similarity
                    }
                }
            };
            let weighted = value * term.weight;
            total = Some(match total {
                Some(sum) => sum + weighted,
                None => weighted,
            });
        }
        values.push(total.ok_or_else(|| Error::bad_input(format!("objective {index} has no terms")))?);
    }
    Ok(Tensor::cat(&values, 0))
}

/// Lucent's diversity term for each group of `per_objective` images at one layer: the
/// negated mean over images of the summed cosine similarity of its Gram matrix with the
/// others'. One value per group, spread over its rows (so it adds to each image's
/// objective in equal parts).
pub fn diversity(tap: &Tensor, groups: i64, per_objective: i64) -> Result<Tensor> {
    if tap.dim() < 3 {
        return Err(Error::bad_input(format!("diversity needs a layer with spatial positions; this one has output shape {:?}", tap.size())));
    }
    let (batch, channels) = (tap.size()[0], tap.size()[1]);
    let flattened = tap.reshape([batch, channels, -1]);
    let grams = flattened.matmul(&flattened.transpose(1, 2)).reshape([batch, -1]);
    let grams = &grams / grams.square().sum_dim_intlist(1, true, Kind::Float).sqrt().clamp_min(1e-12);
    let mut values = Vec::new();
    for group in 0..groups {
        let members = grams.narrow(0, group * per_objective, per_objective);
        let similarity = members.matmul(&members.transpose(0, 1));
        // Σ_i Σ_{j≠i} <g_i, g_j> / n
        let off_diagonal = (similarity.sum(Kind::Float) - similarity.diagonal(0, 0, 1).sum(Kind::Float)) / per_objective as f64;
        values.push((-off_diagonal / per_objective as f64).expand([per_objective], false));
    }
    Ok(Tensor::cat(&values, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_parse_with_layer_paths_that_hold_dots() {
        let term = Term::parse("channel:layer1.0.conv1:5", 0.0, &[]).unwrap();
        assert_eq!(term.kind, TermKind::Channel { layer: "layer1.0.conv1".into(), channel: 5 });
        assert_eq!(term.weight, 1.0);
        let neuron = Term::parse("neuron:features.3:2:1:4", 2.0, &[]).unwrap();
        assert_eq!(neuron.kind, TermKind::Neuron { layer: "features.3".into(), channel: 2, position: Some((1, 4)) });
        assert_eq!(Term::parse("channel:layer3.1:*", 1.0, &[]).unwrap().kind, TermKind::EveryChannel { layer: "layer3.1".into() });
        let centre = Term::parse("neuron:features.3:2", 1.0, &[]).unwrap();
        assert_eq!(centre.kind, TermKind::Neuron { layer: "features.3".into(), channel: 2, position: None });
        assert_eq!(Term::parse("class_vs_rest:7", 1.0, &[]).unwrap().kind, TermKind::ClassVsRest(7));
        assert_eq!(Term::parse("layer:layer4", 1.0, &[]).unwrap().kind, TermKind::Layer { layer: "layer4".into() });
        for bad in ["class:x", "class", "channel:conv", "direction:conv", "pixel:3", "class:-1", "layer:"] {
            let error = Term::parse(bad, 1.0, &[]).unwrap_err();
            assert!(error.message.contains(bad), "{bad}: {}", error.message);
        }
    }
}
