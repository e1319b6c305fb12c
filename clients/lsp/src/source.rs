//! Finds layers in Python source text without a Python parser: calls
//! (`x = self.conv1(x)`), attribute definitions (`self.conv1 = nn.Conv2d(...)`) and the
//! entries of an `nn.Sequential(...)` assigned to an attribute. The daemon's call
//! sites tie calls to module paths; definitions and entries are tied by name.

/// A reference to a layer found on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// `self.NAME(`; `start..end` are the columns of NAME.
    Call { name: String, start: u32, end: u32 },
    /// `self.NAME = ...` at the start of a statement.
    Definition { name: String, start: u32, end: u32 },
    /// Entry `index` (0-based) of the `nn.Sequential(...)` assigned to `self.NAME`.
    SequentialEntry { name: String, index: usize },
}

/// The references on every line of a document (0-based lines).
#[derive(Debug, Clone, Default)]
pub struct SourceIndex {
    pub lines: Vec<Vec<SourceRef>>,
}

impl SourceIndex {
    pub fn scan(text: &str) -> SourceIndex {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut index = SourceIndex { lines: vec![Vec::new(); lines.len()] };
        for (line_number, line) in lines.iter().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            let code_end = comment_start(&chars);
            let mut column = 0;
            while let Some(found) = find(&chars[..code_end], "self.", column) {
                column = found + 5;
                if found > 0 && is_identifier_char(chars[found - 1]) {
                    continue;
                }
                let name_end = (column..code_end).find(|&i| !is_identifier_char(chars[i])).unwrap_or(code_end);
                if name_end == column {
                    continue;
                }
                let name: String = chars[column..name_end].iter().collect();
                let (start, end) = (column as u32, name_end as u32);
                let after = (name_end..code_end).find(|&i| !chars[i].is_whitespace());
                match after.map(|i| (i, chars[i])) {
                    Some((_, '(')) => index.lines[line_number].push(SourceRef::Call { name, start, end }),
                    Some((i, '=')) if chars.get(i + 1) != Some(&'=') && chars[..found].iter().all(|c| c.is_whitespace()) => {
                        let rest: String = chars[i + 1..code_end].iter().collect();
                        let rest = rest.trim_start();
                        let sequential = ["nn.Sequential(", "torch.nn.Sequential(", "Sequential("].iter().find(|prefix| rest.starts_with(**prefix));
                        if let Some(prefix) = sequential {
                            let open = code_end - rest.chars().count() + prefix.len();
                            for (entry_line, entry_index) in sequential_entries(&lines, line_number, open) {
                                index.lines[entry_line].push(SourceRef::SequentialEntry { name: name.clone(), index: entry_index });
                            }
                        }
                        index.lines[line_number].push(SourceRef::Definition { name, start, end });
                    }
                    _ => {}
                }
                column = name_end;
            }
        }
        index
    }

    pub fn refs(&self, line: u32) -> &[SourceRef] {
        self.lines.get(line as usize).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The line of each entry of a call whose arguments start at `(line, column)` (just
/// after the opening parenthesis): an entry starts at the first character after the
/// opening parenthesis or after a comma at nesting depth one. Entries written as
/// `OrderedDict(...)` or `*layers` have no fixed index and end the scan.
fn sequential_entries(lines: &[&str], first_line: usize, first_column: usize) -> Vec<(usize, usize)> {
    let mut entries = Vec::new();
    let mut depth = 1;
    let mut expecting = true;
    for (line_number, line) in lines.iter().enumerate().skip(first_line) {
        let chars: Vec<char> = line.chars().collect();
        let code_end = comment_start(&chars);
        let start = if line_number == first_line { first_column } else { 0 };
        let mut quote: Option<char> = None;
        for &c in chars.iter().take(code_end).skip(start) {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                continue;
            }
            if expecting && depth == 1 && !c.is_whitespace() && c != ')' {
                if c == '*' || c == 'O' && line[..].contains("OrderedDict") {
                    return entries;
                }
                entries.push((line_number, entries.len()));
                expecting = false;
            }
            match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return entries;
                    }
                }
                ',' if depth == 1 => expecting = true,
                _ => {}
            }
        }
        if line_number > first_line + 500 {
            break;
        }
    }
    entries
}

fn comment_start(chars: &[char]) -> usize {
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' => return i,
            None => {}
        }
    }
    chars.len()
}

fn find(chars: &[char], needle: &str, from: usize) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len().saturating_sub(needle.len() - 1)).find(|&i| chars[i..].starts_with(&needle))
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &[(u32, SourceRef)]) {
        let index = SourceIndex::scan(text);
        let found: Vec<(u32, SourceRef)> =
            index.lines.iter().enumerate().flat_map(|(line, refs)| refs.iter().map(move |r| (line as u32, r.clone()))).collect();
        assert_eq!(found, expect, "in:\n{text}");
    }

    fn call(name: &str, start: u32) -> SourceRef {
        SourceRef::Call { name: name.into(), start, end: start + name.len() as u32 }
    }

    fn definition(name: &str, start: u32) -> SourceRef {
        SourceRef::Definition { name: name.into(), start, end: start + name.len() as u32 }
    }

    fn entry(name: &str, index: usize) -> SourceRef {
        SourceRef::SequentialEntry { name: name.into(), index }
    }

    #[test]
    fn finds_calls_definitions_and_sequential_entries() {
        check("        x = self.conv1(x)", &[(0, call("conv1", 17))]);
        check("        return self.classifier(self.features(x))", &[(0, call("classifier", 20)), (0, call("features", 36))]);
        check("        self.conv1 = nn.Conv2d(1, 4, 3)", &[(0, definition("conv1", 13))]);
        check("        if self.flag == 1:", &[]);
        check("        x = myself.conv(x)  # self.conv2(x)", &[]);
        check(
            "        self.head = nn.Sequential(\n            nn.Flatten(),\n            nn.Linear(\n                10, 2),\n            nn.ReLU(),\n        )",
            &[(0, definition("head", 13)), (1, entry("head", 0)), (2, entry("head", 1)), (4, entry("head", 2))],
        );
        check(
            "        self.body = nn.Sequential(nn.ReLU(), nn.Tanh())",
            &[(0, entry("body", 0)), (0, entry("body", 1)), (0, definition("body", 13))],
        );
        check("        self.body = nn.Sequential(*layers)", &[(0, definition("body", 13))]);
    }
}
