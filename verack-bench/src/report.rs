//! One JSON line per result, and the statistics behind it (medians, percentiles).

use serde_json::{json, Value};

/// Median of `samples` (the mean of the middle two for an even count); 0 when empty.
pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// The `p`-th percentile (0–100) of `samples` by linear interpolation; 0 when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0).clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (rank - lo as f64)
}

/// A result: `scenario`/`case` name it, `unit` says what `verack` (and `baseline`, when the
/// scenario has one) measure; `higher_is_better` orients the ratio and the target check.
#[derive(Debug, Clone)]
pub struct Result {
    pub scenario: &'static str,
    pub case: String,
    pub unit: &'static str,
    pub verack: Vec<f64>,
    pub baseline: Option<(String, Vec<f64>)>,
    pub target: Option<f64>,
    pub higher_is_better: bool,
    pub extra: Value,
}

impl Result {
    /// Prints the result as one JSON line on stdout.
    pub fn emit(&self) {
        let verack = median(&self.verack);
        let mut line = json!({
            "scenario": self.scenario,
            "case": self.case,
            "unit": self.unit,
            "verack": verack,
            "samples": self.verack,
            "higher_is_better": self.higher_is_better,
            "machine": crate::machine::describe(),
        });
        if let Some((name, samples)) = &self.baseline {
            let base = median(samples);
            line["baseline_name"] = json!(name);
            line["baseline"] = json!(base);
            line["baseline_samples"] = json!(samples);
            if base > 0.0 {
                line["ratio"] = json!(verack / base);
            }
        }
        if let Some(target) = self.target {
            line["target"] = json!(target);
            line["meets_target"] = json!(if self.higher_is_better {
                verack >= target
            } else {
                verack <= target
            });
        }
        if !self.extra.is_null() {
            line["extra"] = self.extra.clone();
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&s, 99.0) - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 100.0), 100.0);
    }
}
