//! The chaos suite: a workload of producers and consumers against a cluster while a nemesis
//! kills, pauses, partitions and slows its nodes; every operation goes into a history, which
//! a checker then judges (see `ARCHITECTURE.md`, "Chaos testing").

pub mod checker;
pub mod history;
pub mod linear;
pub mod nemesis;
pub mod processes;
pub mod run;
