//! `caffe parse_log LOG OUT_DIR`: a Caffe training log into `<log>.train` and
//! `<log>.test` CSV files, the same bytes Caffe's `tools/extra/parse_log.py`
//! writes: columns NumIters, Seconds, LearningRate, then the net's outputs in
//! the order first seen; Python's float text (`500.0`, `1e-05`, `nan`); the
//! `csv.excel` dialect (CRLF line ends, minimal quoting).
//!
//! Unlike the script, the glog prefix with the year (`I20261130 08:22:17.13`,
//! glog ≥ 0.6) is read as well as the classic one (`I1130 08:22:17.13`). For
//! classic prefixes the year is the log file's ctime year, moved on when the
//! month goes backwards (the script's year rollover).
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};

use super::gflags::{self, Spec};
use crate::{Error, Result};

/// The matches parse_log.py's regular expressions make, written out: each
/// takes the leftmost place in the line where its pattern matches.
///
/// `Iteration ([0-9]+)`: the iteration number.
fn match_iteration(line: &str) -> Option<&str> {
    leftmost(line, "Iteration ", |rest| {
        let n = leading_digits(rest);
        (n > 0).then(|| &rest[..n])
    })
}

/// `{Train,Test} net output #([0-9]+): (\S+) = ([.0-9eE+-]+)`: the output's
/// name and value text.
fn match_output<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    leftmost(line, prefix, |rest| {
        let n = leading_digits(rest);
        let rest = rest[n..].strip_prefix(": ").filter(|_| n > 0)?;
        let name_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (name, rest) = rest.split_at(name_len);
        let rest = rest.strip_prefix(" = ").filter(|_| name_len > 0)?;
        let value_len =
            rest.find(|c: char| !matches!(c, '.' | '0'..='9' | 'e' | 'E' | '+' | '-')).unwrap_or(rest.len());
        (value_len > 0).then(|| (name, &rest[..value_len]))
    })
}

/// `lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)`: the rate's text.
fn match_learning_rate(line: &str) -> Option<&str> {
    leftmost(line, "lr = ", |rest| {
        let bytes = rest.as_bytes();
        let mut end = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
        let whole = leading_digits(&rest[end..]);
        let after_point = match bytes.get(end + whole) {
            Some(b'.') => leading_digits(&rest[end + whole + 1..]),
            _ => 0,
        };
        end += if after_point > 0 {
            whole + 1 + after_point
        } else if whole > 0 {
            whole
        } else {
            return None;
        };
        // The optional exponent group: [eE]? [-+]? then at least one digit.
        let mut exp = end;
        if matches!(bytes.get(exp), Some(b'e' | b'E')) {
            exp += 1;
        }
        if matches!(bytes.get(exp), Some(b'-' | b'+')) {
            exp += 1;
        }
        let exp_digits = leading_digits(&rest[exp..]);
        if exp_digits > 0 {
            end = exp + exp_digits;
        }
        Some(&rest[..end])
    })
}

/// The first place `prefix` occurs in `line` where `rest` (the text after it) matches.
fn leftmost<'a, T>(line: &'a str, prefix: &str, rest: impl Fn(&'a str) -> Option<T>) -> Option<T> {
    line.match_indices(prefix).find_map(|(at, _)| rest(&line[at + prefix.len()..]))
}

/// How many ASCII digits `s` starts with.
fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// One CSV row: named values in column order (NumIters, Seconds, LearningRate, outputs…).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<(String, f64)>,
}

impl Row {
    fn new(iteration: f64, seconds: f64, learning_rate: f64) -> Row {
        Row {
            values: vec![
                ("NumIters".to_string(), iteration),
                ("Seconds".to_string(), seconds),
                ("LearningRate".to_string(), learning_rate),
            ],
        }
    }

    /// Sets a value; a name already present keeps its column.
    fn set(&mut self, name: &str, value: f64) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn iteration(&self) -> f64 {
        self.get("NumIters").unwrap_or(f64::NAN)
    }

    pub fn seconds(&self) -> f64 {
        self.get("Seconds").unwrap_or(f64::NAN)
    }

    /// The output names (columns after NumIters, Seconds, LearningRate).
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().skip(3).map(|(n, _)| n.as_str())
    }
}

/// A learning rate as the solver printed it (`Iteration N, lr = X`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrPoint {
    pub iteration: f64,
    pub seconds: f64,
    pub lr: f64,
}

/// What a log holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogData {
    /// The `.train` rows, as parse_log.py builds them.
    pub train: Vec<Row>,
    /// The `.test` rows.
    pub test: Vec<Row>,
    /// The last train and test rows when parse_log.py leaves them out: it
    /// writes a row once it has as many columns as the first row, so a log
    /// whose run stopped after one test pass writes no test row at all.
    /// `caffe plot` draws them; the CSVs stay the script's.
    pub unfinished_train: Option<Row>,
    pub unfinished_test: Option<Row>,
    /// Every `lr = ` line after the first iteration, at its own iteration
    /// (the rows' LearningRate column lags one display interval, as in Caffe's script).
    pub learning_rates: Vec<LrPoint>,
}

/// A glog timestamp: the year when the prefix carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    year: Option<i32>,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

impl Stamp {
    fn at_year(&self, year: i32) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(year, self.month, self.day)?.and_hms_micro_opt(
            self.hour,
            self.minute,
            self.second,
            self.micros,
        )
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `I1130 08:24:29.264564 …` or `I20261130 08:24:29.264564 …`; None for any other line.
fn parse_stamp(line: &str) -> Option<Stamp> {
    let mut words = line.split_whitespace();
    let head = words.next()?;
    let time = words.next()?;
    let mut chars = head.chars();
    chars.next()?; // the severity letter
    let date = chars.as_str();
    // Byte lengths: a date is ASCII digits, so anything else (a multi-byte
    // character) fails `digits` below; `get` never splits a character.
    let (year, month_day) = match date.len() {
        4 => (None, date),
        8 => (Some(digits(date.get(..4)?)? as i32), date.get(4..)?),
        _ => return None,
    };
    let month = digits(month_day.get(..2)?)?;
    let day = digits(month_day.get(2..)?)?;
    let (hms, frac) = time.rsplit_once('.')?;
    let mut parts = hms.split(':');
    let hour = digits(parts.next()?)?;
    let minute = digits(parts.next()?)?;
    let second = digits(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    let micros = digits(frac)?;
    // Python's datetime refuses what chrono would read as a leap second.
    if micros >= 1_000_000 || second >= 60 {
        return None;
    }
    Some(Stamp { year, month, day, hour, minute, second, micros })
}

/// Turns stamps into datetimes: classic stamps take the running year, which
/// moves on when the month goes backwards (a log that spans New Year).
struct Clock {
    year: i32,
    last_month: u32,
}

impl Clock {
    fn resolve(&mut self, stamp: &Stamp) -> Option<NaiveDateTime> {
        let time = match stamp.year {
            Some(y) => stamp.at_year(y)?,
            None => {
                let mut t = stamp.at_year(self.year)?;
                if t.month() < self.last_month {
                    self.year += 1;
                    t = stamp.at_year(self.year)?;
                }
                t
            }
        };
        self.last_month = time.month();
        Some(time)
    }
}

/// Adds a net output to the row being built, the way parse_log.py does: a new
/// iteration starts a new row (pushing the previous one); a row is pushed as
/// soon as it has as many columns as the first row.
fn take_output(
    prefix: &str,
    line: &str,
    pending: &mut Option<Row>,
    rows: &mut Vec<Row>,
    iteration: f64,
    seconds: f64,
    learning_rate: f64,
) {
    if let Some((name, value)) = match_output(line, prefix) {
        // The script would stop on a value float() refuses; we skip the line.
        if let Ok(value) = value.parse::<f64>() {
            let same_iteration = pending.as_ref().is_some_and(|r| r.iteration() == iteration);
            if !same_iteration {
                if let Some(done) = pending.take() {
                    rows.push(done);
                }
            }
            pending.get_or_insert_with(|| Row::new(iteration, seconds, learning_rate)).set(name, value);
        }
    }
    let full = match (pending.as_ref(), rows.first()) {
        (Some(row), Some(first)) => row.values.len() == first.values.len(),
        _ => false,
    };
    if full {
        rows.extend(pending.take());
    }
}

/// The first row has no learning rate yet (the solver prints it after the
/// first outputs): the script copies the second row's.
fn fix_initial_learning_rate(rows: &mut [Row]) {
    if rows.len() > 1 {
        let lr = rows[1].get("LearningRate").unwrap_or(f64::NAN);
        rows[0].set("LearningRate", lr);
    }
}

/// Parses a log's text. `file_year` is the year for classic prefixes
/// (parse_log.py uses the file's ctime year).
///
/// Seconds count from the `Solving …` line, and lines up to it are not read,
/// as in the script. A log without such a line (the script writes nothing
/// for it) counts from its first timestamp instead.
pub fn parse_str(text: &str, file_year: i32) -> LogData {
    let lines: Vec<&str> = text.lines().collect();
    let solving = lines.iter().position(|l| l.contains("Solving") && parse_stamp(l).is_some());
    let (start_stamp, body) = match solving {
        Some(i) => (parse_stamp(lines[i]), &lines[i + 1..]),
        None => (lines.iter().find_map(|l| parse_stamp(l)), &lines[..]),
    };
    let mut data = LogData::default();
    let Some(start_stamp) = start_stamp else { return data };
    let mut clock = Clock { year: file_year, last_month: 0 };
    let Some(start) = clock.resolve(&start_stamp) else { return data };

    let mut iteration = -1.0f64;
    let mut learning_rate = f64::NAN;
    let mut train_row: Option<Row> = None;
    let mut test_row: Option<Row> = None;
    for line in body {
        if let Some(n) = match_iteration(line) {
            iteration = n.parse().unwrap_or(f64::NAN);
        }
        if iteration == -1.0 {
            continue;
        }
        // Lines without a glog prefix (dumped prototxt, a resumed solver's output) are skipped.
        let Some(time) = parse_stamp(line).and_then(|s| clock.resolve(&s)) else { continue };
        let seconds = match (time - start).num_microseconds() {
            Some(us) => us as f64 / 1e6,
            None => continue,
        };
        if let Some(text) = match_learning_rate(line) {
            if let Ok(lr) = text.parse::<f64>() {
                learning_rate = lr;
                data.learning_rates.push(LrPoint { iteration, seconds, lr });
            }
        }
        take_output("Train net output #", line, &mut train_row, &mut data.train, iteration, seconds, learning_rate);
        take_output("Test net output #", line, &mut test_row, &mut data.test, iteration, seconds, learning_rate);
    }
    fix_initial_learning_rate(&mut data.train);
    fix_initial_learning_rate(&mut data.test);
    data.unfinished_train = train_row;
    data.unfinished_test = test_row;
    data
}

/// The year parse_log.py assumes for classic prefixes: the file's ctime, local time.
pub fn file_year(path: &Path) -> Result<i32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let year = chrono::Local
        .timestamp_opt(meta.ctime(), 0)
        .single()
        .map(|t| t.year())
        .unwrap_or_else(|| chrono::Local::now().year());
    Ok(year)
}

/// Reads and parses a log file.
pub fn parse_file(path: &Path) -> Result<LogData> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(parse_str(&String::from_utf8_lossy(&bytes), file_year(path)?))
}

/// A float as Python's `repr` writes it: the shortest text that reads back
/// exactly, with `.0` on whole numbers and an exponent (`1e-05`, `1e+16`)
/// outside 1e-4 ≤ |x| < 1e16.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python's repr.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v < 0.0 { "-" } else { "" };
    // The decimal point sits after `point` digits.
    let point = exponent + 1;
    let body = if point > -4 && point <= 16 {
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, frac) = digits.split_at(point as usize);
            format!("{whole}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{exp_sign}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

/// A field as Python's csv module (excel dialect, minimal quoting) writes it.
fn csv_field(text: &str, delimiter: char) -> String {
    if text.contains(delimiter) || text.contains('"') || text.contains('\n') || text.contains('\r') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The CSV text for `rows`: the first row's names are the header; a value a
/// later row lacks is left empty (values a later row adds are dropped).
pub fn csv_text(rows: &[Row], delimiter: char) -> String {
    let Some(first) = rows.first() else { return String::new() };
    let names: Vec<&str> = first.values.iter().map(|(n, _)| n.as_str()).collect();
    let sep = delimiter.to_string();
    let mut out = String::new();
    out.push_str(&names.iter().map(|n| csv_field(n, delimiter)).collect::<Vec<_>>().join(&sep));
    out.push_str("\r\n");
    for row in rows {
        let fields: Vec<String> = names.iter().map(|n| row.get(n).map(python_float).unwrap_or_default()).collect();
        out.push_str(&fields.join(&sep));
        out.push_str("\r\n");
    }
    out
}

/// Writes `<out_dir>/<log name>.train` and `.test`; like the script, a file
/// with no rows is not written. Returns the files written.
pub fn save_csv_files(log: &Path, out_dir: &Path, data: &LogData, delimiter: char) -> Result<Vec<PathBuf>> {
    let base = log
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file name", log.display())))?
        .to_string_lossy()
        .into_owned();
    let mut written = Vec::new();
    for (suffix, rows) in [("train", &data.train), ("test", &data.test)] {
        if rows.is_empty() {
            continue;
        }
        let path = out_dir.join(format!("{base}.{suffix}"));
        crate::util::write_atomic(&path, csv_text(rows, delimiter).as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

pub const SPEC: Spec = Spec {
    tool: "parse_log",
    usage: "LOG OUT_DIR [-delimiter ,] [-verbose]",
    bools: &[("verbose", false, "print the rows as they are parsed")],
    values: &[("delimiter", ",", "the column separator of the CSV files")],
};

/// The CLI entry: `LOG OUT_DIR [-delimiter C] [-verbose]`.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 2, 2)?;
    let verbose = flags.flag("verbose");
    let given = flags.value("delimiter");
    let given = if given == "\\t" { "\t" } else { given };
    // The script's csv module wants exactly one character.
    let mut chars = given.chars();
    let delimiter = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => return Err(Error::invalid(format!("-delimiter must be one character, got '{given}'"))),
    };
    let (log, out_dir) = (&flags.positional[0], &flags.positional[1]);
    let (log, out_dir) = (Path::new(log), Path::new(out_dir));
    if !out_dir.is_dir() {
        return Err(Error::invalid(format!("{}: no such output folder", out_dir.display())));
    }
    let data = parse_file(log)?;
    let written = save_csv_files(log, out_dir, &data, delimiter)?;
    if verbose {
        for p in &written {
            println!("Wrote {}", p.display());
        }
    }
    if data.train.is_empty() && data.test.is_empty() {
        eprintln!("caffe parse_log: {}: no training or test output found; nothing written", log.display());
    }
    Ok(())
}
