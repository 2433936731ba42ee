//! `phone-sync` component.
