//! End-to-end test support lives in main.rs; this library is empty.
