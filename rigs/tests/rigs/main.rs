//! The rigs' smoke suite: one test binary that runs the real `ordershop-rigs` binary — `load`
//! against a shop it starts, `bench --quick`, a short `chaos` run. They check that the output is
//! well-formed and that nothing failed, never a speed.

mod chaos;
mod helpers;
mod load_bench;
