//! Face datasets: UTKFace (labels in file names) and Kaggle faces-age-detection (`train.csv`),
//! with a deterministic train/validation split.
//!
//! The split is decided by a hash of each file's name alone, so every run on every machine puts
//! each image on the same side, whatever order the directory lists them in.

use crate::model::Gender;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The three age groups of the Kaggle task (and of the 3-group accuracy on UTKFace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AgeGroup {
    Young,
    Middle,
    Old,
}

/// Age limits of the groups: YOUNG below `middle_from`, OLD from `old_from`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupLimits {
    pub middle_from: u32,
    pub old_from: u32,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            middle_from: 30,
            old_from: 60,
        }
    }
}

impl GroupLimits {
    pub fn group(&self, age: f32) -> AgeGroup {
        if age < self.middle_from as f32 {
            AgeGroup::Young
        } else if age < self.old_from as f32 {
            AgeGroup::Middle
        } else {
            AgeGroup::Old
        }
    }
}

/// UTKFace's race field, kept only to report per-race error (bias), never to predict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Race {
    White,
    Black,
    Asian,
    Indian,
    Other,
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Age in years (UTKFace); `None` where only a group is known (Kaggle).
    pub age: Option<u32>,
    pub gender: Option<Gender>,
    pub race: Option<Race>,
    pub group: AgeGroup,
}

/// What a dataset folder held.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    /// Files whose name or row could not be read as a label, with the reason; skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset {}: {problem}", path.display())]
    Unreadable { path: PathBuf, problem: String },
}

/// Labels from a UTKFace file name `AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]`.
pub fn parse_utkface_name(
    name: &str,
    limits: &GroupLimits,
) -> Result<(u32, Gender, Race, AgeGroup), String> {
    let fields: Vec<&str> = name.split('_').collect();
    if fields.len() != 4 {
        return Err(format!(
            "expected AGE_GENDER_RACE_DATETIME, found {} field{}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    let age: u32 = fields[0]
        .parse()
        .ok()
        .filter(|age| (1..=116).contains(age))
        .ok_or_else(|| format!("age `{}` is not a whole number from 1 to 116", fields[0]))?;
    let gender = match fields[1] {
        "0" => Gender::Male,
        "1" => Gender::Female,
        other => return Err(format!("gender `{other}` is not 0 (male) or 1 (female)")),
    };
    let race = match fields[2] {
        "0" => Race::White,
        "1" => Race::Black,
        "2" => Race::Asian,
        "3" => Race::Indian,
        "4" => Race::Other,
        other => return Err(format!("race `{other}` is not 0 to 4")),
    };
    let date = fields[3].split('.').next().unwrap_or("");
    if date.is_empty() || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("date `{}` is not digits", fields[3]));
    }
    Ok((age, gender, race, limits.group(age as f32)))
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Every image in a UTKFace folder, labelled from its name; malformed names are skipped and
/// listed, never guessed.
pub fn load_utkface(dir: &Path, limits: &GroupLimits) -> Result<Dataset, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::Unreadable {
        path: dir.to_path_buf(),
        problem: format!(
            "cannot list the folder ({e}); pass the folder holding the UTKFace .jpg files"
        ),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p))
        .collect();
    paths.sort();
    let mut dataset = Dataset::default();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match parse_utkface_name(name, limits) {
            Ok((age, gender, race, group)) => dataset.samples.push(Sample {
                path,
                age: Some(age),
                gender: Some(gender),
                race: Some(race),
                group,
            }),
            Err(problem) => dataset.skipped.push((path, problem)),
        }
    }
    if !dataset.skipped.is_empty() {
        log::warn!(
            "{}: skipped {} file(s) with malformed names, e.g. {}: {}",
            dir.display(),
            dataset.skipped.len(),
            dataset.skipped[0].0.display(),
            dataset.skipped[0].1
        );
    }
    Ok(dataset)
}

/// One data row of a Kaggle `train.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct KaggleRow<'a> {
    /// 1-based line number in the file, for messages.
    pub line: usize,
    /// The image file name, trimmed; `None` when the row has no comma at all.
    pub id: Option<&'a str>,
    /// The group, or why the row cannot be used.
    pub group: Result<AgeGroup, String>,
}

/// Parses the text of a Kaggle `train.csv` (`ID,Class` header, then `file,YOUNG|MIDDLE|OLD`
/// rows; blank lines ignored). Only the header is fatal: a bad row is reported in its
/// [`KaggleRow::group`] so one typo does not throw away the data set.
pub fn parse_kaggle_csv(text: &str) -> Result<Vec<KaggleRow<'_>>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header))
            if header
                .trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case("ID,Class") => {}
        other => {
            return Err(format!(
                "first line should be `ID,Class`, found `{}`",
                other.map(|(_, l)| l).unwrap_or("")
            ))
        }
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let Some((id, class)) = line.split_once(',') else {
            rows.push(KaggleRow {
                line: number,
                id: None,
                group: Err(format!("line {number}: expected ID,Class, found `{line}`")),
            });
            continue;
        };
        let group = match class.trim() {
            "YOUNG" => Ok(AgeGroup::Young),
            "MIDDLE" => Ok(AgeGroup::Middle),
            "OLD" => Ok(AgeGroup::Old),
            other => Err(format!(
                "line {number}: class `{other}` is not YOUNG, MIDDLE or OLD"
            )),
        };
        rows.push(KaggleRow {
            line: number,
            id: Some(id.trim()),
            group,
        });
    }
    Ok(rows)
}

/// A Kaggle faces-age-detection folder: `train.csv` (`ID,Class` with Class YOUNG, MIDDLE or
/// OLD) beside an image folder (`Train/` by default).
pub fn load_kaggle(dir: &Path, image_dir: &str) -> Result<Dataset, DatasetError> {
    let csv = dir.join("train.csv");
    let text = std::fs::read_to_string(&csv).map_err(|e| DatasetError::Unreadable {
        path: csv.clone(),
        problem: format!("cannot read it ({e}); a Kaggle faces-age-detection folder has train.csv and {image_dir}/"),
    })?;
    let rows = parse_kaggle_csv(&text).map_err(|problem| DatasetError::Unreadable {
        path: csv.clone(),
        problem,
    })?;
    let images = dir.join(image_dir);
    let mut dataset = Dataset::default();
    for row in rows {
        let group = match row.group {
            Ok(group) => group,
            Err(problem) => {
                let path = match row.id {
                    Some(id) => images.join(id),
                    None => csv.clone(),
                };
                dataset.skipped.push((path, problem));
                continue;
            }
        };
        // A row with a group always has an id (no comma means no group).
        let path = images.join(row.id.unwrap_or_default());
        if !path.is_file() {
            let problem = format!("line {}: image file is missing", row.line);
            dataset.skipped.push((path, problem));
            continue;
        }
        dataset.samples.push(Sample {
            path,
            age: None,
            gender: None,
            race: None,
            group,
        });
    }
    if !dataset.skipped.is_empty() {
        log::warn!(
            "{}: skipped {} row(s), e.g. {}",
            csv.display(),
            dataset.skipped.len(),
            dataset.skipped[0].1
        );
    }
    Ok(dataset)
}

/// Whether a file belongs to the validation side of a `val_fraction` split: a hash of the file
/// name, read as a number in [0, 1), below the fraction.
pub fn is_validation(path: &Path, val_fraction: f64) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let unit = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    unit < val_fraction
}

/// Splits samples into (train, validation).
pub fn split(samples: &[Sample], val_fraction: f64) -> (Vec<&Sample>, Vec<&Sample>) {
    samples
        .iter()
        .partition(|s| !is_validation(&s.path, val_fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utkface_names_parse_and_malformed_ones_are_refused() {
        let limits = GroupLimits::default();
        let parsed = parse_utkface_name("100_1_2_20170105174847679.jpg.chip.jpg", &limits).unwrap();
        assert_eq!(parsed, (100, Gender::Female, Race::Asian, AgeGroup::Old));
        let parsed = parse_utkface_name("29_0_4_20170103230112345.jpg", &limits).unwrap();
        assert_eq!(parsed, (29, Gender::Male, Race::Other, AgeGroup::Young));
        // The malformed names in the real data set have a field missing.
        let err = parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg", &limits).unwrap_err();
        assert!(err.contains("found 3 fields"), "{err}");
        assert!(parse_utkface_name("0_1_2_2017.jpg", &limits)
            .unwrap_err()
            .contains("age"));
        assert!(parse_utkface_name("30_2_2_2017.jpg", &limits)
            .unwrap_err()
            .contains("gender"));
        assert!(parse_utkface_name("30_1_7_2017.jpg", &limits)
            .unwrap_err()
            .contains("race"));
        assert!(parse_utkface_name("30_1_1_x.jpg", &limits)
            .unwrap_err()
            .contains("date"));
    }

    #[test]
    fn group_limits_are_inclusive_at_the_lower_end() {
        let limits = GroupLimits::default();
        assert_eq!(limits.group(29.9), AgeGroup::Young);
        assert_eq!(limits.group(30.0), AgeGroup::Middle);
        assert_eq!(limits.group(59.0), AgeGroup::Middle);
        assert_eq!(limits.group(60.0), AgeGroup::Old);
    }

    #[test]
    fn utkface_folder_fixture_loads_with_skips_counted() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "25_0_0_20170101000000001.jpg.chip.jpg",
            "61_1_1_20170101000000002.jpg.chip.jpg",
            "39_1_20170116174525125.jpg.chip.jpg",
            "README.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let data = load_utkface(dir.path(), &GroupLimits::default()).unwrap();
        assert_eq!(data.samples.len(), 2);
        assert_eq!(data.samples[0].age, Some(25));
        assert_eq!(data.samples[1].group, AgeGroup::Old);
        assert_eq!(data.skipped.len(), 1);
        assert!(data.skipped[0]
            .0
            .ends_with("39_1_20170116174525125.jpg.chip.jpg"));
    }

    #[test]
    fn kaggle_fixture_loads_and_bad_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("Train")).unwrap();
        for id in ["1.jpg", "2.jpg", "3.jpg"] {
            std::fs::write(dir.path().join("Train").join(id), b"x").unwrap();
        }
        std::fs::write(
            dir.path().join("train.csv"),
            "ID,Class\n1.jpg,MIDDLE\n2.jpg,YOUNG\n3.jpg,ANCIENT\n4.jpg,OLD\nnonsense\n",
        )
        .unwrap();
        let data = load_kaggle(dir.path(), "Train").unwrap();
        let groups: Vec<AgeGroup> = data.samples.iter().map(|s| s.group).collect();
        assert_eq!(groups, vec![AgeGroup::Middle, AgeGroup::Young]);
        let reasons: Vec<&str> = data.skipped.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("line 4") && reasons[0].contains("ANCIENT"));
        assert!(reasons[1].contains("line 5") && reasons[1].contains("missing"));
        assert!(reasons[2].contains("line 6"));

        std::fs::write(dir.path().join("train.csv"), "file,label\n").unwrap();
        let err = load_kaggle(dir.path(), "Train").unwrap_err().to_string();
        assert!(
            err.contains("train.csv") && err.contains("ID,Class"),
            "{err}"
        );
    }

    #[test]
    fn split_is_deterministic_by_name_and_near_the_fraction() {
        let samples: Vec<Sample> = (0..5000)
            .map(|i| Sample {
                path: PathBuf::from(format!("/a/{i}_0_0_2017.jpg")),
                age: Some(30),
                gender: None,
                race: None,
                group: AgeGroup::Middle,
            })
            .collect();
        let (train, val) = split(&samples, 0.2);
        assert_eq!(train.len() + val.len(), 5000);
        let share = val.len() as f64 / 5000.0;
        assert!((share - 0.2).abs() < 0.02, "{share}");
        // Same name in another folder: same side.
        for s in val.iter().take(50) {
            let moved = Path::new("/elsewhere").join(s.path.file_name().unwrap());
            assert!(is_validation(&moved, 0.2));
        }
        // A known name pinned, so a change of hash shows up as a failing test, not a silent
        // reshuffle of everyone's validation set.
        assert!(!is_validation(
            Path::new("25_0_0_20170101000000001.jpg.chip.jpg"),
            0.0
        ));
        assert!(is_validation(
            Path::new("25_0_0_20170101000000001.jpg.chip.jpg"),
            1.0
        ));
    }
}
