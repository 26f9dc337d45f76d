//! cmdr-proto
