//! Helpers shared by the end-to-end tests: paths to fixtures and built binaries.
