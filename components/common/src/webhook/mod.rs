//! OpenPhone webhook intake: [`signature`] verification (pure), the [`envelope`] fields read from the
//! body (pure), the signing [`keys`] stored by `/admin/setup`, and [`intake`], which stores the event in
//! the queue and answers the HTTP request, and [`kick`], which decides whether it kicks the drain.

pub mod envelope;
pub mod intake;
pub mod keys;
pub mod kick;
pub mod signature;
