//! Face datasets: UTKFace (labels in file names), FairFace (`fairface_label_{train,val}.csv`)
//! and Kaggle faces-age-detection (`train.csv`), with a deterministic train/validation split.
//!
//! FairFace brings its own split (its train and val files). For the others the split is decided
//! by a hash of each file's name alone, so every run on every machine puts each image on the
//! same side, whatever order the directory lists them in.

use agecam::model::Gender;
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

/// The race field of UTKFace (first five) and FairFace (White, Black, Indian and the last
/// four), kept only to report per-race error (bias), never to predict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Race {
    White,
    Black,
    Asian,
    Indian,
    Other,
    EastAsian,
    SoutheastAsian,
    MiddleEastern,
    LatinoHispanic,
}

impl Race {
    /// Every race, in report order.
    pub const ALL: [Race; 9] = [
        Race::White,
        Race::Black,
        Race::Asian,
        Race::Indian,
        Race::Other,
        Race::EastAsian,
        Race::SoutheastAsian,
        Race::MiddleEastern,
        Race::LatinoHispanic,
    ];

    /// Index in [`Race::ALL`], as a crop cache's `labels.csv` stores it.
    pub fn index(self) -> usize {
        Race::ALL.iter().position(|&r| r == self).unwrap_or(0)
    }
}

/// Which side of a dataset's own train/validation split a sample is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Validation,
}

/// FairFace's nine age groups, inclusive year limits; "more than 70" is 70–100 (the model's
/// age classes end at 100).
pub const FAIRFACE_GROUPS: [(u32, u32); 9] = [
    (0, 2),
    (3, 9),
    (10, 19),
    (20, 29),
    (30, 39),
    (40, 49),
    (50, 59),
    (60, 69),
    (70, 100),
];

/// The index in [`FAIRFACE_GROUPS`] of the group holding `age` (rounded down to whole years).
pub fn fairface_group_of(age: f32) -> usize {
    let years = age.max(0.0).floor() as u32;
    FAIRFACE_GROUPS
        .iter()
        .position(|&(_, hi)| years <= hi)
        .unwrap_or(FAIRFACE_GROUPS.len() - 1)
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Age in years (UTKFace); `None` where only a group is known (FairFace, Kaggle).
    pub age: Option<u32>,
    /// The labelled age range in years, inclusive, where only that is known (FairFace).
    pub age_range: Option<(u32, u32)>,
    pub gender: Option<Gender>,
    pub race: Option<Race>,
    pub group: AgeGroup,
    /// The dataset's own split (FairFace); `None`: split by a hash of the file name.
    pub split: Option<Split>,
}

impl Sample {
    /// Whether this sample is on the validation side: its dataset's own split where it has one,
    /// else [`is_validation`] with `val_fraction`.
    pub fn is_validation(&self, val_fraction: f64) -> bool {
        match self.split {
            Some(split) => split == Split::Validation,
            None => is_validation(&self.path, val_fraction),
        }
    }

    /// A name unique within its dataset: the file name, prefixed with the split's folder where
    /// the dataset has its own split (FairFace's `train/1.jpg` and `val/1.jpg` differ).
    pub fn key(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.split {
            Some(Split::Train) => format!("train_{name}"),
            Some(Split::Validation) => format!("val_{name}"),
            None => name,
        }
    }
}

/// What a dataset folder held.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    /// Files whose name or row could not be read as a label, with the reason; skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Why a label (a UTKFace file name, a row or header of a Kaggle or FairFace CSV file) cannot
/// be read, in words that name the field or line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LabelError(pub String);

impl From<String> for LabelError {
    fn from(problem: String) -> LabelError {
        LabelError(problem)
    }
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
) -> Result<(u32, Gender, Race, AgeGroup), LabelError> {
    let fields: Vec<&str> = name.split('_').collect();
    if fields.len() != 4 {
        return Err(format!(
            "expected AGE_GENDER_RACE_DATETIME, found {} field{}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        )
        .into());
    }
    let age: u32 = fields[0]
        .parse()
        .ok()
        .filter(|age| (1..=116).contains(age))
        .ok_or_else(|| format!("age `{}` is not a whole number from 1 to 116", fields[0]))?;
    let gender = match fields[1] {
        "0" => Gender::Male,
        "1" => Gender::Female,
        other => return Err(format!("gender `{other}` is not 0 (male) or 1 (female)").into()),
    };
    let race = match fields[2] {
        "0" => Race::White,
        "1" => Race::Black,
        "2" => Race::Asian,
        "3" => Race::Indian,
        "4" => Race::Other,
        other => return Err(format!("race `{other}` is not 0 to 4").into()),
    };
    let date = fields[3].split('.').next().unwrap_or("");
    if date.is_empty() || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("date `{}` is not digits", fields[3]).into());
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
                age_range: None,
                gender: Some(gender),
                race: Some(race),
                group,
                split: None,
            }),
            Err(problem) => dataset.skipped.push((path, problem.to_string())),
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
    pub group: Result<AgeGroup, LabelError>,
}

/// Parses the text of a Kaggle `train.csv` (`ID,Class` header, then `file,YOUNG|MIDDLE|OLD`
/// rows; blank lines ignored). Only the header is fatal: a bad row is reported in its
/// [`KaggleRow::group`] so one typo does not throw away the data set.
pub fn parse_kaggle_csv(text: &str) -> Result<Vec<KaggleRow<'_>>, LabelError> {
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
            )
            .into())
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
                group: Err(format!("line {number}: expected ID,Class, found `{line}`").into()),
            });
            continue;
        };
        let group = match class.trim() {
            "YOUNG" => Ok(AgeGroup::Young),
            "MIDDLE" => Ok(AgeGroup::Middle),
            "OLD" => Ok(AgeGroup::Old),
            other => {
                Err(format!("line {number}: class `{other}` is not YOUNG, MIDDLE or OLD").into())
            }
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
        problem: problem.to_string(),
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
                dataset.skipped.push((path, problem.to_string()));
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
            age_range: None,
            gender: None,
            race: None,
            group,
            split: None,
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

/// One FairFace age group label: the nine groups, with the two names a spreadsheet mangled in
/// the distributed CSV files (`03-Sep` is 3–9, `Oct-19` is 10–19) mapped back.
pub fn parse_fairface_age(text: &str) -> Result<(u32, u32), LabelError> {
    let index = match text {
        "0-2" => 0,
        "3-9" | "03-Sep" => 1,
        "10-19" | "Oct-19" => 2,
        "20-29" => 3,
        "30-39" => 4,
        "40-49" => 5,
        "50-59" => 6,
        "60-69" => 7,
        "more than 70" => 8,
        other => {
            return Err(format!(
                "age `{other}` is not a FairFace age group (0-2, 3-9, 10-19, 20-29, 30-39, \
                 40-49, 50-59, 60-69, more than 70)"
            )
            .into())
        }
    };
    Ok(FAIRFACE_GROUPS[index])
}

fn parse_fairface_race(text: &str) -> Result<Race, LabelError> {
    Ok(match text {
        "White" => Race::White,
        "Black" => Race::Black,
        "Indian" => Race::Indian,
        "East Asian" => Race::EastAsian,
        "Southeast Asian" => Race::SoutheastAsian,
        "Middle Eastern" => Race::MiddleEastern,
        "Latino_Hispanic" => Race::LatinoHispanic,
        other => return Err(format!("race `{other}` is not a FairFace race").into()),
    })
}

/// One row of a FairFace label file.
#[derive(Debug, Clone, PartialEq)]
pub struct FairFaceRow {
    /// The image, relative to `fair_face/` (e.g. `train/1.jpg`).
    pub file: String,
    /// The age group's inclusive years.
    pub range: (u32, u32),
    pub gender: Gender,
    pub race: Race,
    pub group: AgeGroup,
}

/// Parses one FairFace label file (`file,age,gender,race,service_test` header). Any row that
/// cannot be read is an error naming the file's line: the distributed files are verified, so a
/// bad row means a damaged or different file, and guessing would train on wrong labels.
pub fn parse_fairface_csv(
    text: &str,
    limits: &GroupLimits,
) -> Result<Vec<FairFaceRow>, LabelError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header))
            if header
                .trim()
                .trim_start_matches('\u{feff}')
                .starts_with("file,age,gender,race") => {}
        other => {
            return Err(format!(
                "line 1: expected the header `file,age,gender,race,service_test`, found `{}`",
                other.map(|(_, l)| l).unwrap_or("")
            )
            .into())
        }
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 4 {
            return Err(
                format!("line {number}: expected file,age,gender,race, found `{line}`").into(),
            );
        }
        let range = parse_fairface_age(fields[1]).map_err(|e| format!("line {number}: {e}"))?;
        let gender = match fields[2] {
            "Male" => Gender::Male,
            "Female" => Gender::Female,
            other => {
                return Err(format!("line {number}: gender `{other}` is not Male or Female").into())
            }
        };
        let race = parse_fairface_race(fields[3]).map_err(|e| format!("line {number}: {e}"))?;
        // The 9 groups' limits fall on the 3-group limits, so the group of the lower end is
        // the group of every age in the range.
        let group = limits.group(range.0 as f32);
        if limits.group(range.1 as f32) != group {
            return Err(format!(
                "line {number}: age group {}-{} straddles the 3-group limits {}/{}",
                range.0, range.1, limits.middle_from, limits.old_from
            )
            .into());
        }
        rows.push(FairFaceRow {
            file: fields[0].to_string(),
            range,
            gender,
            race,
            group,
        });
    }
    Ok(rows)
}

/// A FairFace folder as `../shared/data/fairface.sh` lays it out: `fairface_label_train.csv`
/// and `fairface_label_val.csv` beside `fair_face/` (the CSVs' `file` column, e.g.
/// `train/1.jpg`, is relative to it). The two files are the split. Rows whose image is missing
/// are skipped and listed; an unreadable row stops the load naming file and line.
pub fn load_fairface(dir: &Path, limits: &GroupLimits) -> Result<Dataset, DatasetError> {
    let mut dataset = Dataset::default();
    for (csv_name, split) in [
        ("fairface_label_train.csv", Split::Train),
        ("fairface_label_val.csv", Split::Validation),
    ] {
        let csv = dir.join(csv_name);
        let text = std::fs::read_to_string(&csv).map_err(|e| DatasetError::Unreadable {
            path: csv.clone(),
            problem: format!(
                "cannot read it ({e}); pass the folder ../shared/data/fairface.sh extracted \
                 (fairface_label_train.csv, fairface_label_val.csv, fair_face/)"
            ),
        })?;
        let rows =
            parse_fairface_csv(&text, limits).map_err(|problem| DatasetError::Unreadable {
                path: csv.clone(),
                problem: problem.to_string(),
            })?;
        let images = dir.join("fair_face");
        for FairFaceRow {
            file,
            range,
            gender,
            race,
            group,
        } in rows
        {
            let path = images.join(&file);
            if !path.is_file() {
                dataset
                    .skipped
                    .push((path, format!("{csv_name}: image file is missing")));
                continue;
            }
            dataset.samples.push(Sample {
                path,
                age: None,
                age_range: Some(range),
                gender: Some(gender),
                race: Some(race),
                group,
                split: Some(split),
            });
        }
    }
    if !dataset.skipped.is_empty() {
        log::warn!(
            "{}: skipped {} row(s) whose image is missing, e.g. {}",
            dir.display(),
            dataset.skipped.len(),
            dataset.skipped[0].0.display()
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

/// Splits samples into (train, validation): by the dataset's own split where it has one,
/// else by [`is_validation`].
pub fn split(samples: &[Sample], val_fraction: f64) -> (Vec<&Sample>, Vec<&Sample>) {
    samples.iter().partition(|s| !s.is_validation(val_fraction))
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
        let err = parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg", &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("found 3 fields"), "{err}");
        assert!(parse_utkface_name("0_1_2_2017.jpg", &limits)
            .unwrap_err()
            .to_string()
            .contains("age"));
        assert!(parse_utkface_name("30_2_2_2017.jpg", &limits)
            .unwrap_err()
            .to_string()
            .contains("gender"));
        assert!(parse_utkface_name("30_1_7_2017.jpg", &limits)
            .unwrap_err()
            .to_string()
            .contains("race"));
        assert!(parse_utkface_name("30_1_1_x.jpg", &limits)
            .unwrap_err()
            .to_string()
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

    /// A FairFace folder with the real files' layout: both mangled group names, every race.
    fn fairface_fixture(dir: &Path, train_rows: &str) {
        std::fs::create_dir_all(dir.join("fair_face/train")).unwrap();
        std::fs::create_dir_all(dir.join("fair_face/val")).unwrap();
        for f in ["train/1.jpg", "train/2.jpg", "train/3.jpg", "val/1.jpg"] {
            std::fs::write(dir.join("fair_face").join(f), b"x").unwrap();
        }
        std::fs::write(
            dir.join("fairface_label_train.csv"),
            format!("file,age,gender,race,service_test\n{train_rows}"),
        )
        .unwrap();
        std::fs::write(
            dir.join("fairface_label_val.csv"),
            "file,age,gender,race,service_test\nval/1.jpg,more than 70,Female,Latino_Hispanic,TRUE\n",
        )
        .unwrap();
    }

    #[test]
    fn fairface_loads_with_its_own_split_and_mangled_groups_mapped_back() {
        let dir = tempfile::tempdir().unwrap();
        fairface_fixture(
            dir.path(),
            "train/1.jpg,03-Sep,Female,East Asian,FALSE\n\
             train/2.jpg,Oct-19,Male,Southeast Asian,TRUE\n\
             train/3.jpg,30-39,Male,Middle Eastern,TRUE\n\
             train/4.jpg,20-29,Male,White,TRUE\n",
        );
        let data = load_fairface(dir.path(), &GroupLimits::default()).unwrap();
        let got: Vec<_> = data
            .samples
            .iter()
            .map(|s| (s.key(), s.age_range, s.gender, s.race, s.group, s.split))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "train_1.jpg".into(),
                    Some((3, 9)),
                    Some(Gender::Female),
                    Some(Race::EastAsian),
                    AgeGroup::Young,
                    Some(Split::Train)
                ),
                (
                    "train_2.jpg".into(),
                    Some((10, 19)),
                    Some(Gender::Male),
                    Some(Race::SoutheastAsian),
                    AgeGroup::Young,
                    Some(Split::Train)
                ),
                (
                    "train_3.jpg".into(),
                    Some((30, 39)),
                    Some(Gender::Male),
                    Some(Race::MiddleEastern),
                    AgeGroup::Middle,
                    Some(Split::Train)
                ),
                (
                    "val_1.jpg".into(),
                    Some((70, 100)),
                    Some(Gender::Female),
                    Some(Race::LatinoHispanic),
                    AgeGroup::Old,
                    Some(Split::Validation)
                ),
            ]
        );
        assert!(data.samples.iter().all(|s| s.age.is_none()));
        // The missing image is skipped and listed, not guessed.
        assert_eq!(data.skipped.len(), 1);
        assert!(data.skipped[0].0.ends_with("train/4.jpg"));
        // The split is the files', whatever the hash fraction says.
        let (train, val) = split(&data.samples, 0.99);
        assert_eq!((train.len(), val.len()), (3, 1));
    }

    #[test]
    fn fairface_unknown_values_are_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (row, word) in [
            ("train/1.jpg,Nov-19,Female,White,TRUE\n", "`Nov-19`"),
            ("train/1.jpg,20-29,F,White,TRUE\n", "`F`"),
            ("train/1.jpg,20-29,Male,Martian,TRUE\n", "`Martian`"),
            ("train/1.jpg;20-29\n", "expected file,age"),
        ] {
            fairface_fixture(
                dir.path(),
                &format!("train/2.jpg,20-29,Male,White,TRUE\n{row}"),
            );
            let err = load_fairface(dir.path(), &GroupLimits::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("fairface_label_train.csv")
                    && err.contains("line 3")
                    && err.contains(word),
                "{err}"
            );
        }
        std::fs::write(dir.path().join("fairface_label_val.csv"), "id,label\n").unwrap();
        fairface_fixture(dir.path(), "");
        std::fs::write(dir.path().join("fairface_label_val.csv"), "id,label\n").unwrap();
        let err = load_fairface(dir.path(), &GroupLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fairface_label_val.csv") && err.contains("header"),
            "{err}"
        );
        let err = load_fairface(&dir.path().join("nowhere"), &GroupLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fairface.sh"), "{err}");
    }

    #[test]
    fn fairface_groups_cover_every_age_once() {
        assert_eq!(fairface_group_of(0.0), 0);
        assert_eq!(fairface_group_of(2.9), 0);
        assert_eq!(fairface_group_of(3.0), 1);
        assert_eq!(fairface_group_of(69.99), 7);
        assert_eq!(fairface_group_of(70.0), 8);
        assert_eq!(fairface_group_of(116.0), 8);
        for w in FAIRFACE_GROUPS.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }

    #[test]
    fn split_is_deterministic_by_name_and_near_the_fraction() {
        let samples: Vec<Sample> = (0..5000)
            .map(|i| Sample {
                path: PathBuf::from(format!("/a/{i}_0_0_2017.jpg")),
                age: Some(30),
                age_range: None,
                gender: None,
                race: None,
                group: AgeGroup::Middle,
                split: None,
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
