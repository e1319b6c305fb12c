//! The CLI's inspection commands against a real daemon: `--json` on params,
//! activations, predict and graph, the aligned parameter table, and absolute figure
//! paths in human output (the paths `layerlens open` takes). PyTorch, run on the same
//! TorchScript file, gives the reference numbers.

use layerlens_e2e::*;
use serde_json::Value;

fn json_of(url: &str, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = cli(url, args);
    assert!(ok, "layerlens {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("layerlens {args:?} printed no JSON ({error}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_inspection_commands_print_json_tables_and_absolute_figure_paths() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let url = daemon.url.as_str();
    let digits_path = fixtures().join("digits_cnn.pt");
    let (ok, _, stderr) = cli(url, &["models", "add", digits_path.to_str().unwrap(), "--name", "digits", "--input-shape", "1,1,8,8"]);
    assert!(ok, "{stderr}");
    let (input, _, _) = super::digits_batch(work.path(), 2);
    let input = input.to_str().unwrap();
    let facts: Value = serde_json::from_str(&run_reference("torch_facts.py", &[digits_path.to_str().unwrap(), input])).unwrap();

    // params --json: one entry per parameter tensor; the counts add up to PyTorch's.
    let params = json_of(url, &["--json", "params", "digits"]);
    let parameters = params["parameters"].as_array().unwrap();
    let counted: u64 = parameters.iter().map(|parameter| parameter["stats"]["count"].as_u64().unwrap()).sum();
    assert_eq!(Value::from(counted), facts["total_params"]);
    let conv_weight = parameters.iter().find(|parameter| parameter["name"] == "features.0.weight").expect("features.0.weight");
    assert_eq!(conv_weight["shape"], serde_json::json!([16, 1, 3, 3]));

    // The human table: a header and one row per tensor, every column aligned (each
    // column starts at the same character in every line).
    let (ok, table, stderr) = cli(url, &["params", "digits"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    for title in ["parameter", "shape", "count", "mean", "std", "min", "max", "zero%", "NaN/Inf"] {
        assert!(lines[0].split_whitespace().any(|word| word == title), "no {title} column: {}", lines[0]);
    }
    let rows = &lines[1..=parameters.len()];
    let weight_row = rows.iter().find(|line| line.starts_with("features.0.weight ")).expect("a row for features.0.weight");
    assert!(weight_row.contains("(16, 1, 3, 3)") && weight_row.contains(" 144 "), "{weight_row}");
    let count_end = lines[0].find("count").unwrap() + "count".len();
    for row in rows {
        // Right-aligned numbers: the count column ends where its title ends.
        assert_eq!(row.len(), lines[0].len(), "rows and header have the same width:\n{table}");
        assert!(row.as_bytes()[count_end - 1].is_ascii_digit(), "count column misaligned:\n{table}");
    }
    assert!(lines[parameters.len() + 1].contains(&format!("{counted} values")), "{table}");

    // Figures: human output names each figure by its absolute path, even when given
    // relative; --json echoes the path as given.
    let cli_in_work = |args: &[&str]| {
        let (ok, stdout, stderr) = cli_in(Some(work.path()), url, args);
        assert!(ok, "{args:?}: {stderr}");
        stdout
    };
    // One request draws both figures, in one format: the two names must agree on it.
    let (ok, _, stderr) = cli_in(Some(work.path()), url, &["params", "digits", "--figure", "params.png", "--filters", "filters.svg"]);
    assert!(!ok && stderr.contains("different figure formats"), "{stderr}");
    let stdout = cli_in_work(&["params", "digits", "--figure", "params.png", "--filters", "filters.png"]);
    for name in ["params.png", "filters.png"] {
        let absolute = work.path().join(name);
        assert!(stdout.contains(&format!("figure written to {}\n", absolute.display())), "{stdout}");
        assert!(absolute.is_file());
    }
    let stdout = cli_in_work(&["graph", "digits", "--input-shape", "1,1,8,8", "--figure", "graph.svg"]);
    assert!(stdout.contains(&format!("figure written to {}", work.path().join("graph.svg").display())), "{stdout}");

    // activations --json: one entry per module call with statistics, and the anomaly
    // report's fields.
    let activations = json_of(url, &["--json", "activations", "digits", "--input", input]);
    let layers = activations["layers"].as_array().unwrap();
    assert!(layers.iter().any(|layer| layer["path"] == "features.0" && layer["shape"] == serde_json::json!([2, 16, 8, 8])), "{activations}");
    for layer in layers {
        assert!(layer["stats"]["count"].as_u64().unwrap() > 0, "{layer}");
    }
    for anomaly in activations["anomalies"].as_array().unwrap() {
        assert!(["info", "warning", "error"].contains(&anomaly["severity"].as_str().unwrap()), "{anomaly}");
    }

    // predict --json: PyTorch's predicted classes, probabilities in order.
    let prediction = json_of(url, &["--json", "predict", "digits", "--input", input, "--top-k", "3"]);
    let best: Vec<Value> = prediction["top_k"].as_array().unwrap().iter().map(|row| row[0]["class"].clone()).collect();
    assert_eq!(Value::Array(best), facts["predicted"]);
    let first_row = prediction["top_k"][0].as_array().unwrap();
    assert_eq!(first_row.len(), 3);
    let probabilities: Vec<f64> = first_row.iter().map(|top| top["probability"].as_f64().unwrap()).collect();
    assert!(probabilities.windows(2).all(|pair| pair[0] >= pair[1]), "{probabilities:?}");
    assert_eq!(prediction["output"]["shape"], serde_json::json!([2, 10]));

    // graph --json: counts and the figure's path.
    let svg = work.path().join("graph.svg");
    let graph = json_of(url, &["--json", "graph", "digits", "--input-shape", "1,1,8,8", "--figure", svg.to_str().unwrap()]);
    assert!(graph["nodes"].as_u64().unwrap() > 0 && graph["edges"].as_u64().unwrap() > 0, "{graph}");
    assert_eq!(graph["figure"], svg.to_str().unwrap());
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // The fixture is features (conv, relu, conv, relu, maxpool) then classifier (flatten,
    // linear, relu, linear): every op is a box, with the input and the output, 11 in
    // all. `--open features` keeps only that frame open: the classifier becomes one box.
    assert!(graph["alt_text"].as_str().unwrap().contains(": 11 boxes (1 input, 1 output)"), "{graph}");
    let opened = json_of(url, &["--json", "graph", "digits", "--open", "features", "--figure", svg.to_str().unwrap()]);
    assert!(opened["alt_text"].as_str().unwrap().contains(": 8 boxes (1 input, 1 output)"), "{opened}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains(">features: Sequential<") && drawn.contains(">classifier<"), "{drawn}");

    // sanity-check --json names its figure like the other commands.
    let sanity_png = work.path().join("sanity.png");
    let sanity =
        json_of(url, &["--json", "sanity-check", "digits", "--input", input, "--method", "saliency", "--figure", sanity_png.to_str().unwrap()]);
    assert_eq!(sanity["figure"], sanity_png.to_str().unwrap());
    assert!(!sanity["steps"].as_array().unwrap().is_empty());
    assert!(daemon.stop());
}
