//! Heatmap data: a grid of counts with one row per thing (CPU, call site,
//! wait bucket, key) and one column per time slice. How it is drawn is the
//! views' business (`view::heatmap`).

use std::fmt;

use serde::ser::{SerializeSeq as _, SerializeStruct as _};
use serde::{Serialize, Serializer};

use super::{CodeLocation, Key};

/// The most time columns a heatmap grows to; [`Heatmap::add`] ignores counts
/// beyond it so a bogus timestamp cannot make it allocate without bound.
pub const MAX_COLUMNS: usize = 1 << 20;

/// What a heatmap shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeatmapKind {
    /// Lock waits: rows are log2 wait buckets.
    LockWait,
    /// CAS failures: rows are CPUs.
    CasFailuresByCpu,
    /// CAS failures: rows are CAS sites.
    CasFailuresBySite,
    /// CAS attempts: rows are CAS sites.
    CasAttemptsBySite,
    /// Operations on one map's hottest keys: rows are keys.
    HotKeys {
        /// The map's name, if it has one.
        map_name: Option<String>,
        /// Its runtime address.
        map_address: u64,
    },
}

impl HeatmapKind {
    /// What a row is (`wait`, `CPU`, `site`, `key`).
    pub fn row_label(&self) -> &'static str {
        match self {
            Self::LockWait => "wait",
            Self::CasFailuresByCpu => "CPU",
            Self::CasFailuresBySite | Self::CasAttemptsBySite => "site",
            Self::HotKeys { .. } => "key",
        }
    }
}

impl fmt::Display for HeatmapKind {
    /// The title: `Lock wait time`, `CAS failures by CPU`, `Hot keys of M`…
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LockWait => f.write_str("Lock wait time"),
            Self::CasFailuresByCpu => f.write_str("CAS failures by CPU"),
            Self::CasFailuresBySite => f.write_str("CAS failures by site"),
            Self::CasAttemptsBySite => f.write_str("CAS attempts by site"),
            Self::HotKeys {
                map_name: Some(name),
                ..
            } => write!(f, "Hot keys of {name}"),
            Self::HotKeys { map_address, .. } => write!(f, "Hot keys of {map_address:#x}"),
        }
    }
}

/// What one row of a heatmap is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowLabel {
    /// Waits in log2 bucket `b`: `[2^b, 2^(b+1))` ns.
    WaitBucket(usize),
    /// A CPU.
    Cpu(usize),
    /// A code location (a CAS site).
    Site(CodeLocation),
    /// A map key.
    Key(Key),
}

impl fmt::Display for RowLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WaitBucket(bucket) => f.write_str(&bucket_label(*bucket)),
            Self::Cpu(cpu) => write!(f, "cpu{cpu}"),
            Self::Site(site) => write!(f, "{site}"),
            Self::Key(key) => write!(f, "{key}"),
        }
    }
}

/// A human label for a log2 wait bucket: its lower bound, `≥512ns`, `≥1µs`,
/// `≥2ms`…
pub fn bucket_label(bucket: usize) -> String {
    let ns = 1u128 << bucket.min(127);
    let (value, unit) = match ns {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "s"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "ms"),
        n if n >= 1_000 => (n as f64 / 1e3, "µs"),
        n => (n as f64, "ns"),
    };
    format!("≥{value:.0}{unit}")
}

/// A grid of counts: rows × time columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// What the map shows.
    pub kind: HeatmapKind,
    /// The width of one time column in seconds, e.g. `1.0`.
    pub column_seconds: f64,
    /// Rows, top to bottom.
    pub rows: Vec<RowLabel>,
    /// `cells[row][column]`; every row has the same length.
    pub cells: Vec<Vec<u64>>,
}

impl Heatmap {
    /// An all-zero heatmap with the given rows and `columns` time columns
    /// (at most [`MAX_COLUMNS`]).
    pub fn new(
        kind: HeatmapKind,
        column_seconds: f64,
        rows: Vec<RowLabel>,
        columns: usize,
    ) -> Self {
        let columns = columns.min(MAX_COLUMNS);
        let cells = vec![vec![0; columns]; rows.len()];
        Self {
            kind,
            column_seconds,
            rows,
            cells,
        }
    }

    /// The title (see [`HeatmapKind`]'s `Display`).
    pub fn title(&self) -> String {
        self.kind.to_string()
    }

    /// Appends a row of zeros and returns its index.
    pub fn add_row(&mut self, row: RowLabel) -> usize {
        let columns = self.columns();
        self.rows.push(row);
        self.cells.push(vec![0; columns]);
        self.rows.len() - 1
    }

    /// Adds `count` to a cell (saturating), growing every row with zero
    /// columns when `column` is past the end. Returns false, changing
    /// nothing, when `row` does not exist or `column` is not below
    /// [`MAX_COLUMNS`].
    pub fn add(&mut self, row: usize, column: usize, count: u64) -> bool {
        if row >= self.rows.len() || column >= MAX_COLUMNS {
            return false;
        }
        // Keep `cells` in step with `rows` even if a caller edited the fields.
        if self.cells.len() < self.rows.len() {
            self.cells.resize(self.rows.len(), Vec::new());
        }
        let columns = self.columns().max(column + 1);
        for cells in &mut self.cells {
            if cells.len() < columns {
                cells.resize(columns, 0);
            }
        }
        match self.cells.get_mut(row).and_then(|r| r.get_mut(column)) {
            Some(cell) => {
                *cell = cell.saturating_add(count);
                true
            }
            None => false,
        }
    }

    /// The number of time columns (the longest row's length; 0 without rows).
    pub fn columns(&self) -> usize {
        self.cells.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The largest cell (0 for an empty map).
    pub fn max(&self) -> u64 {
        self.cells.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The smallest non-zero cell (0 when all are zero).
    pub fn min_nonzero(&self) -> u64 {
        self.cells
            .iter()
            .flatten()
            .copied()
            .filter(|&c| c > 0)
            .min()
            .unwrap_or(0)
    }

    /// One cell, 0 when out of range.
    pub fn cell(&self, row: usize, column: usize) -> u64 {
        self.cells
            .get(row)
            .and_then(|r| r.get(column))
            .copied()
            .unwrap_or(0)
    }

    /// The sum of one row (saturating; 0 for a row that does not exist).
    pub fn row_total(&self, row: usize) -> u64 {
        self.cells
            .get(row)
            .map_or(0, |cells| cells.iter().fold(0, |a, &c| a.saturating_add(c)))
    }

    /// The sum of all cells (saturating).
    pub fn total(&self) -> u64 {
        (0..self.cells.len()).fold(0, |a, row| a.saturating_add(self.row_total(row)))
    }

    /// True when there is nothing to draw: no rows, no columns, or all zeros.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() || self.columns() == 0 || self.total() == 0
    }

    /// `column_seconds`, or 1 when it is not a positive finite number.
    pub fn seconds_per_column(&self) -> f64 {
        if self.column_seconds.is_finite() && self.column_seconds > 0.0 {
            self.column_seconds
        } else {
            1.0
        }
    }

    /// A copy whose columns are the sums of `factor` adjacent columns (the
    /// last one possibly of fewer) and whose `column_seconds` is `factor`
    /// times as wide. A factor of 0 or 1 gives an unchanged copy.
    pub fn aggregate_columns(&self, factor: usize) -> Heatmap {
        let factor = factor.max(1);
        let columns = self.columns().div_ceil(factor);
        let mut out = Heatmap::new(
            self.kind.clone(),
            self.seconds_per_column() * factor as f64,
            self.rows.clone(),
            columns,
        );
        for (row, cells) in self.cells.iter().enumerate().take(out.cells.len()) {
            for (column, &count) in cells.iter().enumerate() {
                if let Some(cell) = out
                    .cells
                    .get_mut(row)
                    .and_then(|r| r.get_mut(column / factor))
                {
                    *cell = cell.saturating_add(count);
                }
            }
        }
        out
    }
}

/// The rows' labels as text, for the JSON form.
struct Rows<'a>(&'a [RowLabel]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for row in self.0 {
            seq.serialize_element(&row.to_string())?;
        }
        seq.end()
    }
}

impl Serialize for Heatmap {
    /// `{title, row_label, column_seconds, rows, cells}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Heatmap", 5)?;
        s.serialize_field("title", &self.title())?;
        s.serialize_field("row_label", self.kind.row_label())?;
        s.serialize_field("column_seconds", &self.column_seconds)?;
        s.serialize_field("rows", &Rows(&self.rows))?;
        s.serialize_field("cells", &self.cells)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: usize, columns: usize) -> Heatmap {
        let rows = (0..n).map(RowLabel::Cpu).collect();
        Heatmap::new(HeatmapKind::CasFailuresByCpu, 1.0, rows, columns)
    }

    #[test]
    fn add_grows_every_row() {
        let mut map = cpus(2, 3);
        assert_eq!(map.columns(), 3);
        assert!(map.add(1, 7, 5));
        assert_eq!(map.columns(), 8);
        assert!(map.cells.iter().all(|r| r.len() == 8));
        assert!(map.add(1, 7, 2));
        assert_eq!(map.cells[1][7], 7);
        assert!(!map.add(2, 0, 1), "no such row");
        assert!(!map.add(0, MAX_COLUMNS, 1), "too far");
        assert_eq!(map.columns(), 8);
        assert!(map.add(0, 0, u64::MAX));
        assert!(map.add(0, 0, 1));
        assert_eq!(map.cells[0][0], u64::MAX, "saturates");
        let row = map.add_row(RowLabel::Cpu(9));
        assert_eq!(row, 2);
        assert_eq!(map.cells[2].len(), 8);
    }

    #[test]
    fn totals() {
        let mut map = cpus(3, 0);
        map.add(0, 0, 1);
        map.add(0, 4, 2);
        map.add(2, 1, 10);
        assert_eq!(map.row_total(0), 3);
        assert_eq!(map.row_total(1), 0);
        assert_eq!(map.row_total(2), 10);
        assert_eq!(map.row_total(9), 0);
        assert_eq!(map.total(), 13);
        assert_eq!(map.max(), 10);
        assert_eq!(map.min_nonzero(), 1);
        assert!(!map.is_empty());
        assert!(cpus(3, 5).is_empty());
        assert!(cpus(0, 5).is_empty());
        assert_eq!(cpus(0, 5).columns(), 0);
    }

    #[test]
    fn aggregation() {
        let mut map = cpus(1, 5);
        for c in 0..5 {
            map.add(0, c, c as u64 + 1);
        }
        let agg = map.aggregate_columns(2);
        assert_eq!(agg.cells, vec![vec![3, 7, 5]]);
        assert_eq!(agg.column_seconds, 2.0);
        assert_eq!(map.aggregate_columns(0), map);
    }

    #[test]
    fn titles_rows_and_json() {
        let mut map = Heatmap::new(
            HeatmapKind::HotKeys {
                map_name: Some("main.m".into()),
                map_address: 0x10,
            },
            1.0,
            vec![RowLabel::Key(Key::Signed(-1))],
            1,
        );
        map.add(0, 0, 3);
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(json["title"], "Hot keys of main.m");
        assert_eq!(json["row_label"], "key");
        assert_eq!(json["rows"][0], "-1");
        assert_eq!(json["cells"][0][0], 3);
        assert_eq!(RowLabel::WaitBucket(10).to_string(), "≥1µs");
        assert_eq!(RowLabel::Cpu(3).to_string(), "cpu3");
        assert_eq!(bucket_label(20), "≥1ms");
        assert_eq!(bucket_label(0), "≥1ns");
    }
}
