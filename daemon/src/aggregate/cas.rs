//! CAS outcome statistics over time, sampled from the kernel's per-CPU
//! counters (no events: counts cannot be lost).

use probe_common::CasCounts;

use crate::model::{CodeLocation, Heatmap, HeatmapKind, RowLabel};

/// Width of one time column of the CAS heatmaps, in seconds.
pub const COLUMN_SECONDS: f64 = 1.0;

/// Attempts and failures of every CAS site, in total, per CPU and over time.
#[derive(Debug, Clone)]
pub struct CasTimeline {
    /// Plan indexes of the CAS sites, in report order.
    pub sites: Vec<usize>,
    /// Latest counts per CAS site (same order as `sites`) and CPU.
    pub totals: Vec<Vec<CasCounts>>,
    /// Failures by CPU (rows: every CPU of the host) and time.
    pub failures_by_cpu: Heatmap,
    /// Failures by site (rows: `sites`) and time.
    pub failures_by_site: Heatmap,
    /// Attempts by site and time (for failure ratios over time).
    pub attempts_by_site: Heatmap,
}

impl CasTimeline {
    /// A timeline for the given CAS sites (plan indexes with where they
    /// are) on a host with `cpus` possible CPUs.
    pub fn new(sites: Vec<(usize, CodeLocation)>, cpus: usize) -> Self {
        let rows: Vec<RowLabel> = sites
            .iter()
            .map(|(_, site)| RowLabel::Site(site.clone()))
            .collect();
        Self {
            totals: vec![vec![CasCounts::default(); cpus]; sites.len()],
            sites: sites.into_iter().map(|(index, _)| index).collect(),
            failures_by_cpu: Heatmap::new(
                HeatmapKind::CasFailuresByCpu,
                COLUMN_SECONDS,
                (0..cpus).map(RowLabel::Cpu).collect(),
                0,
            ),
            failures_by_site: Heatmap::new(
                HeatmapKind::CasFailuresBySite,
                COLUMN_SECONDS,
                rows.clone(),
                0,
            ),
            attempts_by_site: Heatmap::new(HeatmapKind::CasAttemptsBySite, COLUMN_SECONDS, rows, 0),
        }
    }

    /// Folds in a reading of the kernel's counters for [`Self::sites`]
    /// (`counts[row][cpu]`, cumulative since attach), attributing what
    /// changed since the last reading to time column `column`.
    pub fn sample(&mut self, column: usize, counts: &[Vec<CasCounts>]) {
        for (row, now) in counts.iter().enumerate().take(self.sites.len()) {
            let mut site_failures = 0;
            let mut site_attempts = 0;
            for (cpu, current) in now.iter().enumerate() {
                let Some(last) = self.totals[row].get_mut(cpu) else {
                    continue;
                };
                let failures = current.failures.saturating_sub(last.failures);
                let attempts = current.attempts.saturating_sub(last.attempts);
                if failures > 0 {
                    self.failures_by_cpu.add(cpu, column, failures);
                }
                site_failures += failures;
                site_attempts += attempts;
                *last = *current;
            }
            // Keep every column present even when nothing happened in it.
            self.failures_by_site.add(row, column, site_failures);
            self.attempts_by_site.add(row, column, site_attempts);
            self.failures_by_cpu.add(0, column, 0);
        }
    }

    /// Total attempts and failures of CAS site `row`, and failures per CPU.
    pub fn site_totals(&self, row: usize) -> (u64, u64, Vec<u64>) {
        let per_cpu = &self.totals[row];
        (
            per_cpu.iter().map(|c| c.attempts).sum(),
            per_cpu.iter().map(|c| c.failures).sum(),
            per_cpu.iter().map(|c| c.failures).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(attempts: u64, failures: u64) -> CasCounts {
        CasCounts { attempts, failures }
    }

    #[test]
    fn deltas_go_to_their_columns_and_totals_stay_exact() {
        // Plan site 1 is the only CAS site; the host has 2 CPUs.
        let site = CodeLocation {
            function: "f".into(),
            offset: 0x10,
        };
        let mut timeline = CasTimeline::new(vec![(1, site)], 2);
        timeline.sample(0, &[vec![counts(10, 3), counts(5, 1)]]);
        timeline.sample(1, &[vec![counts(10, 3), counts(9, 2)]]);
        timeline.sample(2, &[vec![counts(20, 8), counts(9, 2)]]);
        assert_eq!(timeline.site_totals(0), (29, 10, vec![8, 2]));
        assert_eq!(
            timeline.failures_by_cpu.cells,
            vec![vec![3, 0, 5], vec![1, 1, 0]]
        );
        assert_eq!(timeline.failures_by_site.cells, vec![vec![4, 1, 5]]);
        assert_eq!(timeline.attempts_by_site.cells, vec![vec![15, 4, 10]]);
        assert_eq!(timeline.failures_by_cpu.total(), 10);
    }
}
