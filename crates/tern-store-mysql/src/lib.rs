//! Placeholder: the mysql store is being written.
