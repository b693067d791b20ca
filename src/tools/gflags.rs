//! Command-line flags as Caffe's tools take them (gflags): `-name value`,
//! `-name=value`, `--name value`, `--name=value`; boolean flags alone mean
//! true, `-noname` or `-name=false` mean false; flags and positional arguments
//! may be mixed; `--` ends the flags.
use std::collections::HashMap;

use crate::{Error, Result};

/// The flags a tool accepts: booleans and valued flags, each with its
/// default and a one-line description (what `-help` prints).
pub struct Spec<'a> {
    pub tool: &'a str,
    pub usage: &'a str,
    pub bools: &'a [(&'a str, bool, &'a str)],
    pub values: &'a [(&'a str, &'a str, &'a str)],
}

/// The tool's help, as gflags prints it: the usage line, then each flag with
/// its description and default.
pub fn help(spec: &Spec) -> String {
    let mut out = format!("usage: caffe {} {}\n", spec.tool, spec.usage);
    if spec.bools.is_empty() && spec.values.is_empty() {
        return out;
    }
    out.push_str("flags:\n");
    let width = spec.bools.iter().map(|b| b.0.len()).chain(spec.values.iter().map(|v| v.0.len())).max().unwrap_or(0);
    for (name, default, text) in spec.bools {
        out.push_str(&format!("  -{name:<width$}  {text} (default: {default})\n"));
    }
    for (name, default, text) in spec.values {
        // An empty default is described by the text itself.
        let default = if default.is_empty() { String::new() } else { format!(" (default: \"{default}\")") };
        out.push_str(&format!("  -{name:<width$}  {text}{default}\n"));
    }
    out
}

/// Whether the words ask for help (`-help`, `--help`, `-h`).
pub fn wants_help(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| matches!(a.as_str(), "-help" | "--help" | "-h" | "--h"))
}

/// Parsed flags and the positional arguments, in order.
#[derive(Debug, Clone)]
pub struct Flags {
    bools: HashMap<String, bool>,
    values: HashMap<String, String>,
    pub positional: Vec<String>,
}

impl Flags {
    pub fn flag(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map(|s| s.as_str()).unwrap_or("")
    }
    /// An integer flag; the error names the flag.
    pub fn int(&self, name: &str) -> Result<i64> {
        let v = self.value(name);
        v.trim().parse::<i64>().map_err(|_| Error::usage(format!("flag -{name} wants an integer, got '{v}'")))
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" | "yes" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "f" | "n" => Ok(false),
        _ => Err(Error::usage(format!("flag -{name} wants true or false, got '{v}'"))),
    }
}

/// Parses `args` (the words after the tool's name).
pub fn parse(spec: &Spec, args: &[String]) -> Result<Flags> {
    let mut bools: HashMap<String, bool> = spec.bools.iter().map(|(n, d, _)| (n.to_string(), *d)).collect();
    let mut values: HashMap<String, String> =
        spec.values.iter().map(|(n, d, _)| (n.to_string(), d.to_string())).collect();
    let mut positional = Vec::new();
    let known = || {
        let mut names: Vec<String> = spec.bools.iter().map(|(n, _, _)| format!("-{n}")).collect();
        names.extend(spec.values.iter().map(|(n, _, _)| format!("-{n}")));
        names.join(", ")
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a.len() == 1 {
            positional.push(a.clone());
            continue;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "help" || name == "h" {
            return Err(Error::usage(help(spec).trim_end().to_string()));
        }
        if bools.contains_key(name) {
            let v = match inline {
                Some(v) => parse_bool(name, v)?,
                None => true,
            };
            bools.insert(name.to_string(), v);
        } else if let Some(base) = name.strip_prefix("no").filter(|b| inline.is_none() && bools.contains_key(*b)) {
            bools.insert(base.to_string(), false);
        } else if values.contains_key(name) {
            let v = match inline {
                Some(v) => v.to_string(),
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(Error::usage(format!(
                            "flag -{name} needs a value (usage: caffe {} {})",
                            spec.tool, spec.usage
                        )));
                    };
                    i += 1;
                    v.clone()
                }
            };
            values.insert(name.to_string(), v);
        } else {
            return Err(Error::usage(format!("{}: unknown flag {a} (flags: {})", spec.tool, known())));
        }
    }
    Ok(Flags { bools, values, positional })
}

/// Checks the number of positional arguments, with the tool's usage line.
pub fn expect_positional(spec: &Spec, flags: &Flags, min: usize, max: usize) -> Result<()> {
    let n = flags.positional.len();
    if n < min || n > max {
        return Err(Error::usage(format!("usage: caffe {} {} (got {n} argument(s))", spec.tool, spec.usage)));
    }
    Ok(())
}
