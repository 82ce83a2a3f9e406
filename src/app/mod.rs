//! Wiring of the stages for the CLI.
