//! `[server] timezone` (default `Asia/Tokyo`): the clock the secretariat reads in lists (the
//! console and the CLI). Zones come from the system's tz database (`/usr/share/zoneinfo`,
//! Debian's tzdata), read as TZif: the offset of the last transition at or before the time.
//! Debian's files are "fat" (transitions listed to 2037), so no footer rule is needed before
//! then. Stored times stay UTC; this is display only.

use std::sync::{Arc, RwLock};

pub const DEFAULT: &str = "Asia/Tokyo";
const ZONEINFO: &str = "/usr/share/zoneinfo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// (UTC unix seconds, index into `types`), ascending.
    transitions: Vec<(i64, usize)>,
    /// (UTC offset in seconds, abbreviation such as `JST`).
    types: Vec<(i32, String)>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Zone {
    /// A fixed offset (when no tz database is at hand).
    pub fn fixed(name: &str, offset: i32, abbrev: &str) -> Zone {
        Zone {
            name: name.into(),
            transitions: Vec::new(),
            types: vec![(offset, abbrev.into())],
        }
    }

    /// The zone `name` (e.g. `Asia/Tokyo`, `UTC`) from the system's tz database.
    pub fn load(name: &str) -> Result<Zone, String> {
        let ok = !name.is_empty()
            && !name.starts_with('/')
            && !name
                .split('/')
                .any(|p| p == ".." || p == "." || p.is_empty())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
        if !ok {
            return Err(format!(
                "`{name}` is not a time zone name (e.g. Asia/Tokyo)"
            ));
        }
        let path = std::path::Path::new(ZONEINFO).join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "time zone `{name}`: {}: {e} (install tzdata)",
                path.display()
            )
        })?;
        Zone::parse(name, &bytes)
    }

    /// Parses a TZif file (the version 2+ 64-bit block when there is one).
    pub fn parse(name: &str, b: &[u8]) -> Result<Zone, String> {
        let bad = || format!("time zone `{name}`: not a TZif file");
        let header = |at: usize| -> Option<[usize; 6]> {
            if b.get(at..at + 4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = be32(b, at + 20 + 4 * i)? as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, time, typ, chars] = header(0).ok_or_else(bad)?;
        let v1_len = time * 5 + typ * 6 + chars + leap * 8 + isstd + isut;
        let (at, tsize, [_, _, _, time, typ, chars]) = if b.get(4).is_some_and(|v| *v >= b'2') {
            let at = 44 + v1_len;
            (at + 44, 8, header(at).ok_or_else(bad)?)
        } else {
            (44, 4, [isut, isstd, leap, time, typ, chars])
        };
        let times = b.get(at..at + time * tsize).ok_or_else(bad)?;
        let idx = b
            .get(at + time * tsize..at + time * (tsize + 1))
            .ok_or_else(bad)?;
        let tt_at = at + time * (tsize + 1);
        let names = b
            .get(tt_at + typ * 6..tt_at + typ * 6 + chars)
            .ok_or_else(bad)?;
        let mut types = Vec::with_capacity(typ);
        for i in 0..typ {
            let off = be32(b, tt_at + i * 6).ok_or_else(bad)? as i32;
            let ai = *b.get(tt_at + i * 6 + 5).ok_or_else(bad)? as usize;
            let abbrev: String = names
                .get(ai..)
                .unwrap_or_default()
                .iter()
                .take_while(|c| **c != 0)
                .map(|c| *c as char)
                .collect();
            types.push((off, abbrev));
        }
        if types.is_empty() {
            return Err(bad());
        }
        let mut transitions = Vec::with_capacity(time);
        for i in 0..time {
            let t = if tsize == 8 {
                i64::from_be_bytes(times[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
            } else {
                i32::from_be_bytes(times[i * 4..i * 4 + 4].try_into().expect("4 bytes")) as i64
            };
            let ty = idx[i] as usize;
            if ty >= types.len() {
                return Err(bad());
            }
            transitions.push((t, ty));
        }
        Ok(Zone {
            name: name.into(),
            transitions,
            types,
        })
    }

    /// The offset (seconds east of UTC) and abbreviation at UTC time `t`.
    pub fn at(&self, t: i64) -> (i32, &str) {
        let i = self.transitions.partition_point(|(tt, _)| *tt <= t);
        let ty = match i {
            0 => 0,
            n => self.transitions[n - 1].1,
        };
        let (off, ab) = &self.types[ty];
        (*off, ab)
    }

    /// `2026-12-03 18:40` in this zone.
    pub fn format(&self, t: i64) -> String {
        let (off, _) = self.at(t);
        let tz = chrono::FixedOffset::east_opt(off)
            .unwrap_or(chrono::FixedOffset::east_opt(0).expect("0"));
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }

    /// The abbreviation at `t` (`JST`), or the offset (`+09:00`) when the zone has none.
    pub fn abbrev(&self, t: i64) -> String {
        let (off, ab) = self.at(t);
        if ab.is_empty() || ab.starts_with(['+', '-']) {
            format!(
                "{}{:02}:{:02}",
                if off < 0 { '-' } else { '+' },
                off.abs() / 3600,
                off.abs() % 3600 / 60
            )
        } else {
            ab.to_string()
        }
    }
}

static ZONE: RwLock<Option<Arc<Zone>>> = RwLock::new(None);

/// Sets the process's display zone (from the config, at start).
pub fn set(z: Zone) {
    *ZONE.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(z));
}

/// The display zone: the configured one, else Asia/Tokyo (fixed +09:00 without tzdata).
pub fn current() -> Arc<Zone> {
    if let Some(z) = ZONE.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return z;
    }
    let z = Zone::load(DEFAULT).unwrap_or_else(|_| Zone::fixed(DEFAULT, 9 * 3600, "JST"));
    set(z.clone());
    Arc::new(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokyo_and_berlin_from_the_system_database() {
        let tokyo = Zone::load("Asia/Tokyo").unwrap();
        // 2026-12-03T09:40:00Z
        let t = 1_796_290_800;
        assert_eq!(tokyo.at(t), (9 * 3600, "JST"));
        assert_eq!(tokyo.format(t), "2026-12-03 18:40");
        let berlin = Zone::load("Europe/Berlin").unwrap();
        assert_eq!(berlin.at(t), (3600, "CET"));
        // 2026-07-01T12:00:00Z: summer time.
        assert_eq!(berlin.at(1_782_907_200), (7200, "CEST"));
        assert_eq!(berlin.format(1_782_907_200), "2026-07-01 14:00");
        assert_eq!(Zone::load("UTC").unwrap().format(t), "2026-12-03 09:40");
        for bad in [
            "../etc/passwd",
            "/etc/localtime",
            "Asia/Nowhere",
            "",
            "Asia//Tokyo",
        ] {
            assert!(Zone::load(bad).is_err(), "{bad}");
        }
        assert!(Zone::parse(
            "x",
            b"not a tzif file at all, not at all...................."
        )
        .is_err());
    }
}
