//! The age buckets statistics are counted in. A low layer: the configuration parses them (so a
//! running daemon only ever holds valid buckets) and the statistics use them; neither is
//! imported from here.

/// Age buckets given by their lower bounds, e.g. [0, 13, 18, 25, 35, 45, 55, 65] →
/// 0-12, 13-17, 18-24, 25-34, 35-44, 45-54, 55-64, 65+.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "Vec<u32>")]
pub struct AgeBuckets {
    lower_bounds: Vec<u32>,
}

/// Bucket and gender label for visits whose age or gender the model did not give.
pub const UNKNOWN: &str = "unknown";

/// Why lower bounds make no age buckets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketsError {
    #[error("the first age bucket must start at 0")]
    FirstNotZero,
    #[error("age bucket bounds must rise strictly")]
    NotRising,
}

/// The config file's `stats.age_buckets` rejected: the bounds found and what is wrong with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("found {found:?}, allowed bounds starting at 0 and rising ({problem})")]
pub struct BucketsRejected {
    pub found: Vec<u32>,
    pub problem: BucketsError,
}

impl TryFrom<Vec<u32>> for AgeBuckets {
    type Error = BucketsRejected;

    /// The config file's `stats.age_buckets`: checked as it is read.
    fn try_from(lower_bounds: Vec<u32>) -> Result<AgeBuckets, BucketsRejected> {
        let found = lower_bounds.clone();
        AgeBuckets::new(lower_bounds).map_err(|problem| BucketsRejected { found, problem })
    }
}

impl AgeBuckets {
    /// `lower_bounds` must start at 0 and rise strictly.
    pub fn new(lower_bounds: Vec<u32>) -> Result<AgeBuckets, BucketsError> {
        if lower_bounds.first() != Some(&0) {
            return Err(BucketsError::FirstNotZero);
        }
        if lower_bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(BucketsError::NotRising);
        }
        Ok(AgeBuckets { lower_bounds })
    }

    pub fn labels(&self) -> Vec<String> {
        (0..self.lower_bounds.len())
            .map(|i| self.label(i))
            .collect()
    }

    fn label(&self, index: usize) -> String {
        let low = self.lower_bounds[index];
        match self.lower_bounds.get(index + 1) {
            Some(next) => format!("{low}-{}", next - 1),
            None => format!("{low}+"),
        }
    }

    /// The bucket label for an age; whole years, as people state their age.
    pub fn bucket(&self, age: Option<f32>) -> String {
        let Some(age) = age else {
            return UNKNOWN.to_string();
        };
        let years = age.max(0.0).floor() as u32;
        let index = self
            .lower_bounds
            .iter()
            .rposition(|&low| years >= low)
            .unwrap_or(0);
        self.label(index)
    }
}

impl Default for AgeBuckets {
    fn default() -> Self {
        AgeBuckets {
            lower_bounds: vec![0, 13, 18, 25, 35, 45, 55, 65],
        }
    }
}
