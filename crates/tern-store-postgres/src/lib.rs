//! Placeholder: the postgres store is being written.
