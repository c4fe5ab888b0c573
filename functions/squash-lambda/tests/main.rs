//! squash-lambda's integration tests, one binary: the `events/` samples and the wire
//! fan-out (`events`), the deployment templates against the code (`infra`), and the
//! Lambda invoker against a fake Lambda API (`invoker`), and the write routes (`writes`).

mod events;
mod infra;
mod invoker;
mod writes;
