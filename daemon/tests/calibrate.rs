//! The trap-cost calibration probes mapwatch's own function and measures
//! both kinds of site (requires root and the BPF object).

use mapwatch::loader::calibrate::calibrate;

#[test]
fn both_kinds_of_site_are_measured_and_single_stepping_costs_more() {
    let costs = calibrate().expect("calibrating");
    eprintln!("calibrated: {costs:?}");
    assert!(costs.emulated_ns > 0.0, "{costs:?}");
    // Single-stepping takes a second trap and an out-of-line copy: more
    // than an emulated instruction on any x86 host.
    assert!(costs.single_stepped_ns > costs.emulated_ns, "{costs:?}");
    // A hit costs well under a millisecond anywhere mapwatch runs.
    assert!(costs.single_stepped_ns < 1e6, "{costs:?}");
}
