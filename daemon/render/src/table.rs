//! The model summary as an SVG table (text needs no fonts on the daemon's machine).

use crate::svg::xml_escape;
use crate::Figure;

/// One row of the summary table.
pub struct TableRow<'a> {
    pub path: &'a str,
    pub type_name: &'a str,
    pub depth: u32,
    pub num_params: u64,
}

const ROW_HEIGHT: usize = 18;

pub fn summary_table_svg(title: &str, rows: &[TableRow<'_>], total_params: u64, trainable_params: u64) -> Figure {
    let width = 760;
    let height = (rows.len() + 4) * ROW_HEIGHT;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"8\" y=\"14\" font-weight=\"bold\">{}</text>\
         <text x=\"8\" y=\"{}\" font-weight=\"bold\">Layer (type)</text><text x=\"620\" y=\"{}\" font-weight=\"bold\">Param #</text>",
        xml_escape(title),
        2 * ROW_HEIGHT,
        2 * ROW_HEIGHT,
    );
    for (index, row) in rows.iter().enumerate() {
        let y = (index + 3) * ROW_HEIGHT;
        let name = if row.path.is_empty() { "(root)" } else { row.path.rsplit('.').next().unwrap_or(row.path) };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\">{} ({})</text><text x=\"620\" y=\"{y}\">{}</text>",
            8 + 16 * row.depth,
            xml_escape(name),
            xml_escape(row.type_name),
            row.num_params
        ));
    }
    let footer_y = (rows.len() + 3) * ROW_HEIGHT + 4;
    svg.push_str(&format!("<text x=\"8\" y=\"{footer_y}\">Total params: {total_params}   Trainable params: {trainable_params}</text></svg>"));
    Figure {
        mime: "image/svg+xml".to_string(),
        data: svg.into_bytes(),
        alt_text: format!("{title}: {} modules, {total_params} parameters ({trainable_params} trainable)", rows.len()),
    }
}
