//! Turns the suite's JSON result lines into the tables of BENCHMARKS.md.

use serde_json::Value;

/// The markdown tables for `results` (one JSON object per result line, as printed by the
/// scenarios): a machine line, then one table row per result with verack's median, the
/// baseline's median, their ratio, the target and whether it is met.
pub fn tables(results: &[Value]) -> String {
    let mut out = String::new();
    if let Some(machine) = results.first().and_then(|r| r.get("machine")) {
        out.push_str(&format!(
            "Machine: {}, {} cores, {} GiB, Linux {}; {} build.\n\n",
            machine["cpu"].as_str().unwrap_or("?"),
            machine["cores"],
            machine["mem_gib"],
            machine["kernel"].as_str().unwrap_or("?"),
            machine["profile"].as_str().unwrap_or("?"),
        ));
    }
    out.push_str(
        "| scenario | case | verack (median) | baseline (median) | ratio | target | met | runs |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in results {
        let unit = r["unit"].as_str().unwrap_or("");
        let baseline = match (r["baseline"].as_f64(), r["baseline_name"].as_str()) {
            (Some(b), Some(name)) => format!("{} ({name})", number(b, unit)),
            _ => "–".into(),
        };
        let ratio = r["ratio"]
            .as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "–".into());
        let (target, met) = match r["target"].as_f64() {
            Some(t) => {
                let cmp = if r["higher_is_better"].as_bool().unwrap_or(true) {
                    "≥"
                } else {
                    "<"
                };
                let met = if r["meets_target"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "**no**"
                };
                (format!("{cmp} {}", number(t, unit)), met)
            }
            None => ("–".into(), "–"),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["scenario"].as_str().unwrap_or("?"),
            r["case"].as_str().unwrap_or("?"),
            number(r["verack"].as_f64().unwrap_or(f64::NAN), unit),
            baseline,
            ratio,
            target,
            met,
            r["samples"].as_array().map_or(0, |s| s.len()),
        ));
    }
    out
}

/// `x` with a precision suited to its size, then the unit.
fn number(x: f64, unit: &str) -> String {
    let digits = if x.abs() >= 1000.0 {
        let whole = x.round() as i64;
        let s = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if whole < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    };
    format!("{digits} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_medians_ratios_and_targets() {
        let rows = vec![
            json!({"scenario":"throughput","case":"61-byte inv","unit":"messages/s","verack":1234567.0,
                   "samples":[1.0,2.0,3.0],"baseline":4000000.0,"baseline_name":"plain","ratio":0.31,
                   "target":1000000.0,"meets_target":true,"higher_is_better":true,
                   "machine":{"cpu":"X","cores":2,"mem_gib":24.0,"kernel":"6","profile":"release"}}),
            json!({"scenario":"many_peers","case":"ping p99","unit":"ms","verack":12.5,"samples":[12.5],
                   "target":10.0,"meets_target":false,"higher_is_better":false}),
        ];
        let md = tables(&rows);
        assert!(md.starts_with("Machine: X, 2 cores, 24.0 GiB, Linux 6; release build."));
        assert!(md.contains("| throughput | 61-byte inv | 1,234,567 messages/s | 4,000,000 messages/s (plain) | 0.31 | ≥ 1,000,000 messages/s | yes | 3 |"), "{md}");
        assert!(
            md.contains("| many_peers | ping p99 | 12.5 ms | – | – | < 10.0 ms | **no** | 1 |"),
            "{md}"
        );
    }
}
