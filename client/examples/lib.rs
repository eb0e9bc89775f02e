//! Examples of the client crates; see the `*.rs` files next to this one. Each takes the
//! server address as its first argument (default `127.0.0.1:7070`, the standalone node of
//! `./deploy/run-standalone.sh`).
