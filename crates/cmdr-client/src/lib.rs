//! cmdr-client
