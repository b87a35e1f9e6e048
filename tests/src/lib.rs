//! Shared fixtures for the cross-service tests.
