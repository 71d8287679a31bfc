//! redb storage (to be written).
