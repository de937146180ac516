//! hopstage's one integration-test binary.
mod util;
