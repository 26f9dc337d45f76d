//! cmdrd
