//! The test image's init (work in progress).

fn main() {}
