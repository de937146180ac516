//! hopstage's one integration-test binary: every test runs the built
//! executable against a real Azurite started by `util::azurite`.

mod bootstrap;
mod copy;
mod doctor;
mod faults;
mod hostile;
mod interop;
mod lustre;
mod mover;
mod package;
mod resume;
mod shard;
mod slurm;
mod util;
