//! `queue-drain` component.
