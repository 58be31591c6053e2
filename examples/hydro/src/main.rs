//! The hydro example (being built).
fn main() {}
