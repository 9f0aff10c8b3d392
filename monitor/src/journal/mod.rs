//! Journal: durable SQLite store of connection records and residency rows.
