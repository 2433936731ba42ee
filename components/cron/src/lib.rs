//! `cron` component.
