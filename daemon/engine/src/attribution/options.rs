//! A method's text options (`--param KEY=VALUE`), checked against the names the
//! method accepts and parsed with messages that name the method and the key.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

pub struct Options<'a> {
    method: &'a str,
    params: &'a BTreeMap<String, String>,
}

/// Options every method takes: Captum's `internal_batch_size` caps rows per pass.
const COMMON: &[&str] = &["internal_batch_size"];

impl<'a> Options<'a> {
    pub fn new(method: &'a str, params: &'a BTreeMap<String, String>) -> Options<'a> {
        Options { method, params }
    }

    /// Fails on any key outside `accepted` (and the common options).
    pub fn accept(&self, accepted: &[&str]) -> Result<()> {
        let known = |key: &str| {
            accepted.contains(&key)
                || COMMON.contains(&key)
                || key.split_once('.').is_some_and(|(base, index)| accepted.contains(&base) && index.parse::<usize>().is_ok())
        };
        if let Some(unknown) = self.params.keys().find(|key| !known(key)) {
            let mut names: Vec<&str> = accepted.iter().chain(COMMON).copied().collect();
            names.sort();
            return Err(Error::bad_input(format!("unknown parameter '{unknown}' for {}; accepted: {}", self.method, names.join(", "))));
        }
        Ok(())
    }

    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.text(key) {
            None => Ok(default),
            Some("true" | "True" | "1") => Ok(true),
            Some("false" | "False" | "0") => Ok(false),
            Some(other) => Err(self.invalid(key, other, "true or false")),
        }
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        match self.text(key) {
            None => Ok(default),
            Some(text) => text.trim().parse::<f64>().ok().filter(|value| value.is_finite()).ok_or_else(|| self.invalid(key, text, "a finite number")),
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        match self.text(key) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<i64>() {
                Ok(value) if (min..=max).contains(&value) => Ok(value),
                _ => Err(self.invalid(key, text, &format!("an integer from {min} to {max}"))),
            },
        }
    }

    pub fn optional_int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
        self.text(key).map(|_| self.int(key, 0, min, max)).transpose()
    }

    /// Comma-separated integers, each at least `min`: `3,8,8`.
    pub fn int_list(&self, key: &str, min: i64) -> Result<Option<Vec<i64>>> {
        let Some(text) = self.text(key) else { return Ok(None) };
        let values: Option<Vec<i64>> = text.split(',').map(|part| part.trim().parse::<i64>().ok().filter(|&value| value >= min)).collect();
        values
            .filter(|values| !values.is_empty())
            .map(Some)
            .ok_or_else(|| self.invalid(key, text, &format!("comma-separated integers of at least {min}")))
    }

    /// Comma-separated numbers (one per input, or one for all).
    pub fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(text) = self.text(key) else { return Ok(None) };
        let values: Option<Vec<f64>> = text.split(',').map(|part| part.trim().parse::<f64>().ok().filter(|value| value.is_finite())).collect();
        values.filter(|values| !values.is_empty()).map(Some).ok_or_else(|| self.invalid(key, text, "comma-separated numbers"))
    }

    /// One of `choices`.
    pub fn choice(&self, key: &str, default: &'a str, choices: &[&'a str]) -> Result<&'a str> {
        match self.text(key) {
            None => Ok(default),
            Some(text) => choices
                .iter()
                .copied()
                .find(|choice| *choice == text)
                .ok_or_else(|| self.invalid(key, text, &format!("one of {}", choices.join(", ")))),
        }
    }

    pub fn invalid(&self, key: &str, value: &str, expected: &str) -> Error {
        Error::bad_input(format!("parameter {key}={value} for {} is not valid; expected {expected}", self.method))
    }

    pub fn missing(&self, key: &str, what: &str) -> Error {
        Error::bad_input(format!("{} needs parameter {key}: {what}", self.method))
    }

    pub fn method(&self) -> &'a str {
        self.method
    }
}
