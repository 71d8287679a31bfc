//! Raft for persistent data (to be written).
