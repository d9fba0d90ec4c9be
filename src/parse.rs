//! Parsers for everything a user writes: sizes, contract root lists and
//! control-file lines. Pure functions, so they can be fuzzed alone.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};

const SECTOR: u128 = SECTOR_SIZE as u128;

/// A size in slots: a plain number of slots, or bytes with a unit
/// (`512MiB`, `4TiB`, `1GB`, `4194304B`) that must be whole sectors.
pub fn parse_size(text: &str) -> Result<u64> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(Error::Invalid(format!(
            "size {:?} must start with a number (slots, or bytes with a unit such as 512MiB)",
            short(text)
        )));
    }
    let n: u128 = digits
        .parse()
        .map_err(|_| Error::Invalid(format!("size {:?} is too large", short(text))))?;
    if unit.is_empty() {
        return u64::try_from(n)
            .map_err(|_| Error::Invalid(format!("size {:?} is too large", short(text))));
    }
    let mult: u128 = match unit {
        "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "PiB" | "P" => 1 << 50,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "PB" => 1_000_000_000_000_000,
        _ => {
            return Err(Error::Invalid(format!(
                "unknown unit {:?} in size {:?}; use B, KiB, MiB, GiB, TiB, PiB (or kB, MB, \
                 GB, TB, PB), or no unit for a number of slots",
                short(unit),
                short(text)
            )));
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| Error::Invalid(format!("size {:?} is too large", short(text))))?;
    if bytes % SECTOR != 0 {
        return Err(Error::Invalid(format!(
            "size {:?} is {bytes} bytes, not a whole number of 4 MiB sectors",
            short(text)
        )));
    }
    u64::try_from(bytes / SECTOR)
        .map_err(|_| Error::Invalid(format!("size {:?} is too large", short(text))))
}

/// A contract's content: one root per line, each line `<root>\n` (the
/// last newline may be missing). Empty input is an empty list.
pub fn parse_root_list(data: &[u8]) -> Result<Vec<Root>> {
    let text = std::str::from_utf8(data)
        .map_err(|_| Error::Invalid("a contract list must be text: one root per line".into()))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    // one root per line; a lone newline is an empty line, not an empty list
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            line.parse::<Root>().map_err(|_| {
                Error::Invalid(format!(
                    "line {} of the contract list is {:?}, not a root of 64 lowercase hex \
                     characters",
                    i + 1,
                    short(line)
                ))
            })
        })
        .collect()
}

/// `/volumes/add`: `<absolute path> <size>`.
pub fn parse_volume_add(line: &str) -> Result<(PathBuf, u64)> {
    let line = line.trim();
    let Some((path, size)) = line.rsplit_once(char::is_whitespace) else {
        return Err(Error::Invalid(format!(
            "write \"<path> <size>\" to add a volume, e.g. \"/disks/a/vol1.dat 4TiB\"; got {:?}",
            short(line)
        )));
    };
    let path = parse_volume_path(path)?;
    Ok((path, parse_size(size)?))
}

/// A volume's absolute path (`/volumes/attach`, the path of `add`): no
/// control characters, no `..`.
pub fn parse_volume_path(line: &str) -> Result<PathBuf> {
    let path = line.trim();
    if path.is_empty() {
        return Err(Error::Invalid(
            "write the absolute path of a volume file".into(),
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "volume path {:?} contains a control character",
            short(path)
        )));
    }
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Error::Invalid(format!(
            "volume path {} must be absolute",
            path.display()
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::Invalid(format!(
            "volume path {} must not contain \"..\"",
            path.display()
        )));
    }
    Ok(path)
}

/// `0` or `1`.
pub fn parse_flag(line: &str) -> Result<bool> {
    match line.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(Error::Invalid(format!(
            "write 0 or 1, not {:?}",
            short(other)
        ))),
    }
}

/// A size in bytes (`min_free`): as [`parse_size`], so a plain number is
/// slots; at most what a database integer holds.
pub fn parse_byte_size(text: &str) -> Result<u64> {
    parse_size(text)?
        .checked_mul(SECTOR as u64)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| Error::Invalid(format!("size {:?} is too large", short(text))))
}

/// A volume's `max_sectors`: a size (`0`: no cap).
pub fn parse_max_sectors(text: &str) -> Result<u64> {
    Some(parse_size(text)?)
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| Error::Invalid(format!("size {:?} is too large", short(text))))
}

/// A volume's weight: a whole number from 0 to 1000000.
pub fn parse_weight(line: &str) -> Result<u32> {
    let t = line.trim();
    let digits = !t.is_empty() && t.len() <= 7 && t.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| t.parse::<u32>().ok())
        .flatten()
        .filter(|w| *w <= 1_000_000)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "a weight is a whole number from 0 (no new sectors) to 1000000, not {:?}",
                short(t)
            ))
        })
}

/// A non-negative decimal number (the height).
pub fn parse_height(line: &str) -> Result<u64> {
    let t = line.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "a height is a non-negative whole number, not {:?}",
            short(t)
        )));
    }
    t.parse::<u64>()
        .ok()
        .filter(|h| *h <= i64::MAX as u64)
        .ok_or_else(|| Error::Invalid(format!("height {:?} is too large", short(t))))
}

/// A line of `/copies`: `<min>` (max the same) or `<min> <max>`, with
/// `max >= min >= 1`.
pub fn parse_copies(line: &str) -> Result<(u32, u32)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |w: &str| -> Result<u32> {
        // digits only: no sign, no spaces, nothing `parse` would forgive
        let digits = !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| w.parse::<u32>().ok())
            .flatten()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "a number of copies is a whole number from 1, not {:?}",
                    short(w)
                ))
            })
    };
    let (min, max) = match words.as_slice() {
        [min] => (number(min)?, number(min)?),
        [min, max] => (number(min)?, number(max)?),
        _ => {
            return Err(Error::Invalid(format!(
                "write the copies as <min> or <min> <max> (for example: 2 3), not {:?}",
                short(line.trim())
            )));
        }
    };
    if max < min {
        return Err(Error::Invalid(format!(
            "the most copies ({max}) cannot be fewer than the fewest ({min})"
        )));
    }
    Ok((min, max))
}

/// A duration: a number with a unit `s`, `m`, `h` or `d` (`90s`, `7d`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        Error::Invalid(format!(
            "duration {:?} must be a number with s, m, h or d",
            short(t)
        ))
    })?;
    let secs = match unit {
        "s" | "" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86400),
        _ => None,
    }
    .ok_or_else(|| Error::Invalid(format!("duration {:?}: use s, m, h or d", short(t))))?;
    Ok(std::time::Duration::from_secs(secs))
}

/// What may be written to `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCommand {
    Dismiss(u64),
    DismissAll,
}

pub fn parse_status_command(line: &str) -> Result<StatusCommand> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("dismiss"), Some("all"), None) => Ok(StatusCommand::DismissAll),
        (Some("dismiss"), Some(id), None) => id
            .parse()
            .map(StatusCommand::Dismiss)
            .map_err(|_| Error::Invalid(format!("alert id {:?} is not a number", short(id)))),
        _ => Err(Error::Invalid(format!(
            "write \"dismiss <id>\" or \"dismiss all\", not {:?}",
            short(line.trim())
        ))),
    }
}

/// Cuts untrusted text short for messages.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), 256);
        assert_eq!(parse_size("1GiB").unwrap(), 256);
        assert_eq!(parse_size("512MiB\n").unwrap(), 128);
        assert_eq!(parse_size("4TiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("4194304B").unwrap(), 1);
        assert_eq!(parse_size("8 MiB").unwrap(), 2);
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5GiB",
            "3MiB",
            "1XB",
            "99999999999999999999999999",
        ] {
            assert_eq!(parse_size(bad).unwrap_err().errno(), libc::EINVAL, "{bad}");
        }
    }

    #[test]
    fn root_lists() {
        let r = "50ed59cecd5ed3ca9e65cec0797202091dbba45272dafa3faa4e27064eedd52c";
        assert_eq!(parse_root_list(b"").unwrap().len(), 0);
        assert_eq!(
            parse_root_list(format!("{r}\n{r}\n").as_bytes())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_root_list(r.as_bytes()).unwrap().len(), 1);
        for bad in [
            format!("{r}\n\n"),
            format!("{r} \n"),
            r.to_uppercase(),
            "\n".to_string(),
        ] {
            assert!(parse_root_list(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_root_list(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn control_lines() {
        let (p, n) = parse_volume_add("/disks/a/vol 1.dat 4TiB\n").unwrap();
        assert_eq!(p, PathBuf::from("/disks/a/vol 1.dat"));
        assert_eq!(n, 1 << 20);
        assert!(parse_volume_add("vol.dat 1GiB").is_err());
        assert!(parse_volume_add("/a/../b 1GiB").is_err());
        assert!(parse_volume_add("/a/b").is_err());
        assert!(parse_volume_add("/a/b\0c 8").is_err());
        assert!(parse_volume_add("/a/b\x1bc 8").is_err());
        assert!(parse_flag("1\n").unwrap());
        assert!(parse_flag("yes").is_err());
        assert_eq!(parse_height("42\n").unwrap(), 42);
        assert_eq!(parse_weight("0\n").unwrap(), 0);
        assert_eq!(parse_weight("1000000").unwrap(), 1_000_000);
        for bad in ["", "-1", "1000001", "1.5", "+3", "4294967296", "x"] {
            assert!(parse_weight(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_byte_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_byte_size("2").unwrap(), 8 << 20);
        assert!(parse_byte_size("1000").is_ok());
        assert!(parse_byte_size("9999999999999").is_err(), "past i64 bytes");
        assert!(parse_byte_size("1B").is_err());
        assert!(parse_max_sectors("18446744073709551615").is_err());
        assert_eq!(parse_max_sectors("3").unwrap(), 3);
        assert!(parse_height("-1").is_err());
        assert!(parse_height("18446744073709551616").is_err());
        assert_eq!(
            parse_status_command("dismiss 3\n").unwrap(),
            StatusCommand::Dismiss(3)
        );
        assert_eq!(
            parse_status_command("dismiss all").unwrap(),
            StatusCommand::DismissAll
        );
        assert!(parse_status_command("dismiss").is_err());
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86400);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
