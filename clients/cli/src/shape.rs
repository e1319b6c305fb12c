//! Tensor shapes as the CLI takes them (`--input-shape 1,3,224,224`), shared by the
//! command modules; a leaf, so the modules that define commands do not depend on each
//! other for it.

/// A tensor shape written as comma-separated integers: `1,3,224,224`.
#[derive(Debug, Clone)]
pub struct Shape(pub Vec<i64>);

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Shape, String> {
        text.split(',')
            .map(|dim| dim.trim().parse::<i64>().map_err(|_| format!("'{text}' is not a comma-separated list of integers")))
            .collect::<Result<_, _>>()
            .map(Shape)
    }
}
