//! A model's tokenizer (`tokenizer.json`, read by Hugging Face's `tokenizers` library)
//! and the text features the engine perturbs: a prompt's tokens (Captum's
//! `TextTokenInput`) or a template's values (`TextTemplateInput`, re-tokenized for
//! each perturbation, as Captum does).

use crate::error::{ApiError, ApiResult};
use layerlens_engine::text::TextFeatures;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// Parses tokenizer.json bytes.
pub fn parse(bytes: &[u8]) -> ApiResult<Tokenizer> {
    Tokenizer::from_bytes(bytes).map_err(|error| ApiError::bad_input(format!("not a tokenizer.json the tokenizers library can read: {error}")))
}

/// Token ids of `text` (with the tokenizer's special tokens when `special`).
pub fn encode(tokenizer: &Tokenizer, text: &str, special: bool) -> ApiResult<(Vec<i64>, Vec<String>)> {
    let encoding = tokenizer.encode(text, special).map_err(|error| ApiError::bad_input(format!("cannot tokenize the text: {error}")))?;
    Ok((encoding.get_ids().iter().map(|&id| i64::from(id)).collect(), encoding.get_tokens().to_vec()))
}

/// The token of an id as the tokenizer names it (`Ġthe`), or `<id>` when it has none.
pub fn token(tokenizer: &Tokenizer, id: i64) -> String {
    u32::try_from(id).ok().and_then(|id| tokenizer.id_to_token(id)).unwrap_or_else(|| format!("<{id}>"))
}

/// The text of ids (special tokens kept, as `tokenizer.decode(ids)` does by default).
pub fn decode(tokenizer: &Tokenizer, ids: &[i64]) -> ApiResult<String> {
    let ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
    tokenizer.decode(&ids, false).map_err(|error| ApiError::internal(format!("cannot decode tokens: {error}")))
}

/// A token given as an id (`"50256"`) or as a token string (`"<|endoftext|>"`).
pub fn token_id(tokenizer: &Tokenizer, token: &str) -> ApiResult<i64> {
    if let Ok(id) = token.parse::<i64>() {
        return Ok(id);
    }
    tokenizer.token_to_id(token).map(i64::from).ok_or_else(|| ApiError::bad_input(format!("token {token:?} is not in the tokenizer's vocabulary")))
}

/// Every prompt token is a feature except the skipped ones; a removed token becomes
/// the baseline id.
pub struct TokenFeatures {
    pub ids: Vec<i64>,
    /// Positions in `ids` that are features.
    pub positions: Vec<usize>,
    pub baseline: i64,
}

impl TokenFeatures {
    pub fn new(ids: Vec<i64>, skip: &[i64], baseline: i64) -> TokenFeatures {
        let positions = (0..ids.len()).filter(|&position| !skip.contains(&ids[position])).collect();
        TokenFeatures { ids, positions, baseline }
    }
}

impl TextFeatures for TokenFeatures {
    fn count(&self) -> usize {
        self.positions.len()
    }

    fn token_positions(&self) -> Option<Vec<usize>> {
        Some(self.positions.clone())
    }

    fn ids(&self, present: &[bool]) -> layerlens_engine::Result<Vec<i64>> {
        let mut ids = self.ids.clone();
        for (&position, &kept) in self.positions.iter().zip(present) {
            if !kept {
                ids[position] = self.baseline;
            }
        }
        Ok(ids)
    }
}

/// A template's values are the features; a removed value becomes its baseline and the
/// completed text is tokenized again.
pub struct TemplateFeatures {
    pub template: Template,
    pub values: Vec<String>,
    pub baselines: Vec<String>,
    pub tokenizer: Arc<Tokenizer>,
}

impl TextFeatures for TemplateFeatures {
    fn count(&self) -> usize {
        self.values.len()
    }

    fn ids(&self, present: &[bool]) -> layerlens_engine::Result<Vec<i64>> {
        let values: Vec<&str> = self
            .values
            .iter()
            .zip(&self.baselines)
            .zip(present)
            .map(|((value, baseline), &kept)| if kept { value.as_str() } else { baseline.as_str() })
            .collect();
        let text = self.template.fill(&values);
        encode(&self.tokenizer, &text, true).map(|(ids, _)| ids).map_err(|error| layerlens_engine::Error::bad_input(error.message))
    }
}

/// A Python `str.format` template: literal text and slots, `{}` (the next value),
/// `{0}` (by position) or `{name}`; `{{` and `}}` are braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// The index of the value the slot takes.
    Slot(usize),
}

impl Template {
    /// Parses `template`; `names` gives the value order for `{name}` slots (empty for
    /// positional templates). Answers the template and the number of values it needs.
    pub fn parse(template: &str, names: &[String]) -> ApiResult<Template> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut next_auto = 0;
        let mut characters = template.chars().peekable();
        while let Some(character) = characters.next() {
            match character {
                '{' if characters.peek() == Some(&'{') => {
                    characters.next();
                    text.push('{');
                }
                '}' if characters.peek() == Some(&'}') => {
                    characters.next();
                    text.push('}');
                }
                '{' => {
                    let mut field = String::new();
                    loop {
                        match characters.next() {
                            Some('}') => break,
                            Some(inner) => field.push(inner),
                            None => return Err(ApiError::bad_input(format!("template {template:?} has a `{{` without its `}}`"))),
                        }
                    }
                    let index = if field.is_empty() {
                        next_auto += 1;
                        next_auto - 1
                    } else if let Ok(position) = field.parse::<usize>() {
                        position
                    } else {
                        names
                            .iter()
                            .position(|name| *name == field)
                            .ok_or_else(|| ApiError::bad_input(format!("template key {{{field}}} has no value; the values are named {names:?}")))?
                    };
                    parts.push(Part::Text(std::mem::take(&mut text)));
                    parts.push(Part::Slot(index));
                }
                '}' => return Err(ApiError::bad_input(format!("template {template:?} has a single `}}`; write `}}}}` for a brace"))),
                other => text.push(other),
            }
        }
        parts.push(Part::Text(text));
        Ok(Template { parts })
    }

    /// The largest value index a slot uses, plus one.
    pub fn slots(&self) -> usize {
        self.parts.iter().filter_map(|part| if let Part::Slot(index) = part { Some(index + 1) } else { None }).max().unwrap_or(0)
    }

    pub fn fill(&self, values: &[&str]) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Slot(index) => values.get(*index).copied().unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_format_like_python() {
        let template = Template::parse("{} lives in {} {{not a slot}}", &[]).unwrap();
        assert_eq!(template.fill(&["Dave", "Palm Coast"]), "Dave lives in Palm Coast {not a slot}");
        assert_eq!(template.slots(), 2);
        let names = vec!["name".to_string(), "city".to_string()];
        let template = Template::parse("{name} lives in {city}; {name} again", &names).unwrap();
        assert_eq!(template.fill(&["Ann", ""]), "Ann lives in ; Ann again");
        assert!(Template::parse("{nope}", &names).unwrap_err().message.contains("{nope}"));
        assert!(Template::parse("{unclosed", &[]).is_err());
        assert!(Template::parse("a } b", &[]).is_err());
    }

    #[test]
    fn token_features_skip_and_replace_by_the_baseline() {
        let features = TokenFeatures::new(vec![5, 9, 7, 9], &[9], 0);
        assert_eq!(features.count(), 2);
        assert_eq!(features.ids(&[false, true]).unwrap(), vec![0, 9, 7, 9]);
        assert_eq!(features.ids(&[true, false]).unwrap(), vec![5, 9, 0, 9]);
    }
}
